import { open, readFile, rename, stat, unlink } from 'node:fs/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import { hostname } from 'node:os'
import { randomBytes } from 'node:crypto'
import { MemdrainError, ExitCode } from '../errors.js'

export interface LockHolder {
  pid: number
  host: string
  command: string
  startedAt: string
  token: string
  /** A lock taken over after its holder's lease ran out (etcd): about when that happened. */
  expiredAt?: string
}

export interface HeldLock {
  readonly holder: LockHolder
  /** Took over a lock whose holder had died (stale lock). */
  readonly tookOver?: LockHolder | undefined
  /**
   * Aborts when the lock can no longer be vouched for (etcd: its lease could not be renewed in
   * time). A job stops as on SIGINT and saves its state. The file lock never aborts.
   */
  readonly lost?: AbortSignal | undefined
  release(): Promise<void>
}

/** Whether a process of this host is alive (EPERM: alive, someone else's). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

async function readHolder(lockFile: string): Promise<LockHolder | undefined> {
  try {
    return JSON.parse(await readFile(lockFile, 'utf8')) as LockHolder
  } catch {
    return undefined
  }
}

/** Who holds a file lock now: none when there is no lock file, or its holder on this host is gone (stale). */
export async function fileLockHolder(lockFile: string): Promise<LockHolder | undefined> {
  const h = await readHolder(lockFile)
  if (h === undefined || (h.host === hostname() && !pidAlive(h.pid))) return undefined
  return h
}

/**
 * An exclusive lock beside the pool file (`<pool>.lock`), created with O_EXCL. A lock whose
 * holder ran on this host and whose PID is gone is stale: it is moved aside (rename is atomic,
 * so of two processes taking it over only one wins) and taken. A live holder, or one on another
 * host, is named in the refusal.
 */
export async function acquireFileLock(lockFile: string, command: string): Promise<HeldLock> {
  const holder: LockHolder = {
    pid: process.pid,
    host: hostname(),
    command,
    startedAt: new Date().toISOString(),
    token: randomBytes(8).toString('hex'),
  }
  let tookOver: LockHolder | undefined
  for (let attempt = 0; attempt < 50; attempt++) {
    try {
      const handle = await open(lockFile, 'wx', 0o600)
      await handle.writeFile(JSON.stringify(holder) + '\n')
      await handle.sync()
      await handle.close()
      return {
        holder,
        tookOver,
        release: async () => {
          const current = await readHolder(lockFile)
          if (current?.token === holder.token) await unlink(lockFile).catch(() => undefined)
        },
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new MemdrainError(`cannot create the lock file ${lockFile}: ${(err as Error).message}`, {
          code: 'LOCK_FAILED',
          exitCode: ExitCode.precondition,
          suggestions: ['Check that the pool file\'s directory exists and is writable by this user.'],
        })
      }
    }
    const current = await readHolder(lockFile)
    if (current !== undefined && (current.host !== hostname() || pidAlive(current.pid))) {
      throw new MemdrainError(
        `the pool is locked by \`${current.command}\` (pid ${current.pid} on ${current.host}, since ${current.startedAt})`,
        {
          code: 'POOL_LOCKED',
          exitCode: ExitCode.precondition,
          suggestions: [
            'Wait for that job to finish, or stop it (it saves its state and can be resumed).',
            `If that process is gone for good (another host crashed), delete ${lockFile}.`,
          ],
          data: { holder: { pid: current.pid, host: current.host, command: current.command, startedAt: current.startedAt } },
        },
      )
    }
    if (current === undefined) {
      // Unreadable: either being written right now by its creator, or left empty by a crash
      // between create and write. Only an old one is stale.
      const age = await stat(lockFile).then((st) => Date.now() - st.mtimeMs, () => 0)
      if (age < 2000) {
        await sleep(50)
        continue
      }
    }
    // Stale (holder dead) or empty and old: move it aside and retry.
    const aside = `${lockFile}.stale-${randomBytes(4).toString('hex')}`
    try {
      await rename(lockFile, aside)
      await unlink(aside).catch(() => undefined)
      tookOver = current
    } catch {
      // Someone else moved it first; loop and try to create again.
    }
  }
  throw new MemdrainError(`could not take the lock ${lockFile} (another process keeps taking it)`, {
    code: 'POOL_LOCKED',
    exitCode: ExitCode.precondition,
  })
}

/** The job's stop signal: the operator's (SIGINT/SIGTERM), or the loss of its lock, whichever comes first. */
export function withLockLoss(signal: AbortSignal | undefined, lock: HeldLock | undefined): AbortSignal | undefined {
  const lost = lock?.lost
  if (lost === undefined) return signal
  return signal === undefined ? lost : AbortSignal.any([signal, lost])
}
