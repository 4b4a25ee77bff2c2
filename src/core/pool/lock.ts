import { constants } from 'node:fs'
import { open, rename, unlink } from 'node:fs/promises'
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
  return (await readLock(lockFile).catch(() => undefined))?.holder
}

/** A lock file as read: its holder (undefined while empty or unreadable), and an id of this very lock. */
interface SeenLock {
  holder: LockHolder | undefined
  /** The holder's token; for an unreadable lock, its inode and mtime (a fresh lock has other ones). */
  id: string
  ageMs: number
}

async function readLock(lockFile: string): Promise<SeenLock | undefined> {
  let handle
  try {
    handle = await open(lockFile, constants.O_RDONLY | constants.O_NOFOLLOW)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ELOOP') {
      throw new MemdrainError(`the lock file ${lockFile} is a symbolic link: memdrain never takes a lock through a link`, {
        code: 'LOCK_FAILED',
        exitCode: ExitCode.precondition,
        suggestions: [`Check who made ${lockFile}, remove it, and run again.`],
      })
    }
    return undefined
  }
  try {
    const st = await handle.stat()
    let holder: LockHolder | undefined
    try {
      holder = JSON.parse(await handle.readFile('utf8')) as LockHolder
      if (typeof holder?.token !== 'string') holder = undefined
    } catch {
      holder = undefined
    }
    return { holder, id: holder?.token ?? `ino${st.ino}-${Math.floor(st.mtimeMs)}`, ageMs: Date.now() - st.mtimeMs }
  } finally {
    await handle.close()
  }
}

/** Whether a lock may be taken over: its holder ran on this host and is gone, or it stayed empty for 2 s (a crash between create and write). */
function isStale(seen: SeenLock): boolean {
  if (seen.holder === undefined) return seen.ageMs >= 2000
  return seen.holder.host === hostname() && !pidAlive(seen.holder.pid)
}

/** Creates `file` only if it does not exist, with `text` in it; false if it exists. */
async function createExclusive(file: string, text: string): Promise<boolean> {
  let handle
  try {
    handle = await open(file, 'wx', 0o600)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false
    throw err
  }
  try {
    await handle.writeFile(text)
    await handle.sync()
  } finally {
    await handle.close()
  }
  return true
}

/**
 * Removes the stale lock `seen`, if this process is the one allowed to: of all the processes
 * that judged that lock stale, only the one that creates `<lock>.takeover-<id of the lock>`
 * (O_EXCL) may remove it. Moving the lock aside without that (rename, as before) let one
 * process move aside the fresh lock another had just made in its place: both held the lock.
 *
 * The winner reads the lock again and removes it only if it is still that very lock, still
 * stale: a lock can only go away through its one claimant, so it cannot change between that
 * check and the removal. A claimant that died mid-takeover leaves its claim: its own token is
 * then claimed the same way (a chain), so a crash never blocks the lock for good.
 */
async function takeOverStale(lockFile: string, seen: SeenLock, me: LockHolder): Promise<boolean> {
  const claims: string[] = []
  let id = seen.id
  for (let depth = 0; depth < 8; depth++) {
    const claim = `${lockFile}.takeover-${id}`
    if (await createExclusive(claim, JSON.stringify(me) + '\n')) {
      claims.push(claim)
      const now = await readLock(lockFile)
      if (now === undefined || now.id !== seen.id || !isStale(now)) {
        // Already taken over (and maybe taken again) by someone else: not ours to remove.
        await unlink(claim).catch(() => undefined)
        return false
      }
      const aside = `${lockFile}.stale-${randomBytes(4).toString('hex')}`
      await rename(lockFile, aside)
      await unlink(aside).catch(() => undefined)
      // The claims name locks that no longer exist: harmless, but do not leave them about.
      for (const c of claims) await unlink(c).catch(() => undefined)
      return true
    }
    const other = await readLock(claim)
    if (other === undefined) continue // just removed: try to claim again
    if (!isStale(other)) return false // another process is taking over right now
    claims.push(claim)
    id = other.id
  }
  return false
}

/** Who holds a file lock now: none when there is no lock file, or its holder on this host is gone (stale). */
/**
 * Who holds the lock file now, if anyone (for `pool show`); `stale` when the holder ran on this
 * host and its PID is gone (the next job takes the lock over).
 */
export async function fileLockHolder(lockFile: string): Promise<(LockHolder & { stale: boolean }) | undefined> {
  const h = await readHolder(lockFile)
  if (h === undefined) return undefined
  return { ...h, stale: h.host === hostname() && !pidAlive(h.pid) }
}

/**
 * An exclusive lock beside the pool file (`<pool>.lock`), created with O_EXCL. A lock whose
 * holder ran on this host and whose PID is gone is stale: exactly one process takes it over (see
 * takeOverStale). A live holder, or one on another host, is named in the refusal.
 *
 * Not proper-lockfile: its locks go stale by age (the holder must touch them every few seconds,
 * and one that stalls longer, paused or swapping, loses its lock while it runs) and it records
 * no holder to name; memdrain's lock is held for hours by a process whose death is what makes it
 * stale, and an operator needs to know who holds it.
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
    let created: boolean
    try {
      created = await createExclusive(lockFile, JSON.stringify(holder) + '\n')
    } catch (err) {
      throw new MemdrainError(`cannot create the lock file ${lockFile}: ${(err as Error).message}`, {
        code: 'LOCK_FAILED',
        exitCode: ExitCode.precondition,
        suggestions: ['Check that the pool file\'s directory exists and is writable by this user.'],
      })
    }
    if (created) {
      return {
        holder,
        tookOver,
        release: async () => {
          const current = await readHolder(lockFile)
          if (current?.token === holder.token) await unlink(lockFile).catch(() => undefined)
        },
      }
    }
    const seen = await readLock(lockFile)
    if (seen === undefined) continue // released meanwhile
    const current = seen.holder
    if (current !== undefined && !isStale(seen)) {
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
    if (!isStale(seen)) {
      // Unreadable and young: being written right now by its creator.
      await sleep(50)
      continue
    }
    if (await takeOverStale(lockFile, seen, holder)) tookOver = current
    else await sleep(10 + Math.random() * 40)
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
