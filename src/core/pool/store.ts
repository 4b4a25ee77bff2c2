import { readFile, access, constants } from 'node:fs/promises'
import { createHash } from 'node:crypto'
import path from 'node:path'
import { MemdrainError, ExitCode } from '../errors.js'
import { poolToDocument, type Pool } from './model.js'
import { parsePoolText } from './validate.js'
import { writeFileAtomic } from './atomic-write.js'
import { acquireFileLock, fileLockHolder, type HeldLock } from './lock.js'
import { readReportDir } from './client-reports.js'

/** A loaded pool and the revision it was read at (for compare-and-swap on save). */
export interface PoolSnapshot {
  readonly pool: Pool
  readonly revision: string
}

/**
 * Where the pool lives. The file store is the default; other stores (etcd) implement the same
 * contract: validated loads, saves that refuse to overwrite a change made since the load, and
 * an exclusive lock for jobs that change the pool.
 */
export interface PoolStore {
  /** Human name of the location, used in every message ("memdrain.json", "etcd://…/pool"). */
  readonly location: string
  readonly writable: boolean
  load(): Promise<PoolSnapshot>
  /** Write `pool` if the stored revision is still `expectedRevision`; returns the new revision. */
  save(pool: Pool, expectedRevision: string): Promise<string>
  lock(command: string): Promise<HeldLock>
  /**
   * Puts back the exact document this store loaded at `revision`, if the stored one is still
   * `expectedRevision` (a refused job undoing its own mark). False when it cannot.
   */
  restore?(revision: string, expectedRevision: string): Promise<boolean>
  /** The migration reports pool-aware clients left for this pool (see pool/client-reports.ts); none for a pool without a place for them. */
  clientReports(): Promise<unknown[]>
  /** Who holds the job lock now, if anyone. */
  lockHolder(): Promise<LockInfo | undefined>
  /**
   * The revision stored now, whatever the document holds (valid or not), for a save that
   * replaces it; `exists: false` when nothing is stored yet.
   */
  storedRevision(): Promise<{ revision: string; exists: boolean }>
  /** Told of things an operator should know (a lock taken over after its holder's lease expired). */
  onNotice?: ((message: string) => void) | undefined
}

/** The holder of a pool's job lock, as `pool show` reports it. */
export interface LockInfo {
  command: string
  pid: number
  host: string
  startedAt: string
}

function lockInfo(h: LockInfo): LockInfo {
  return { command: h.command, pid: h.pid, host: h.host, startedAt: h.startedAt }
}

export function revisionOf(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 16)
}

export class FilePoolStore implements PoolStore {
  readonly writable = true
  constructor(readonly file: string) {}

  get location(): string {
    return this.file
  }

  /** Texts loaded by this store, by revision (the last few), for restore(). */
  private readonly loaded = new Map<string, string>()

  async load(): Promise<PoolSnapshot> {
    let text: string
    try {
      text = await readFile(this.file, 'utf8')
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      throw new MemdrainError(
        code === 'ENOENT' ? `pool file ${this.file} does not exist` : `cannot read pool file ${this.file}: ${(err as Error).message}`,
        {
          code: code === 'ENOENT' ? 'POOL_NOT_FOUND' : 'POOL_UNREADABLE',
          exitCode: ExitCode.precondition,
          suggestions: [
            'Pass --pool FILE or set MEMDRAIN_POOL, or create memdrain.json (see README, "The pool file").',
            'For a one-off run without a file: --servers host:port,host:port --hash NAME.',
          ],
        },
      )
    }
    const pool = parsePoolText(text, this.file)
    const revision = revisionOf(text)
    this.loaded.set(revision, text)
    if (this.loaded.size > 4) this.loaded.delete(this.loaded.keys().next().value!)
    return { pool, revision }
  }

  async restore(revision: string, expectedRevision: string): Promise<boolean> {
    const text = this.loaded.get(revision)
    if (text === undefined) return false
    const current = await readFile(this.file, 'utf8').catch(() => undefined)
    if (current === undefined || revisionOf(current) !== expectedRevision) return false
    await writeFileAtomic(this.file, text)
    return true
  }

  async save(pool: Pool, expectedRevision: string): Promise<string> {
    const current = await readFile(this.file, 'utf8').catch(() => undefined)
    if (current !== undefined && revisionOf(current) !== expectedRevision) {
      throw new MemdrainError(`pool file ${this.file} was changed by someone else since memdrain read it; not overwriting`, {
        code: 'POOL_CHANGED',
        exitCode: ExitCode.precondition,
        suggestions: ['Run the command again: it re-reads the pool file.'],
      })
    }
    const text = JSON.stringify(poolToDocument(pool), null, 2) + '\n'
    try {
      await access(path.dirname(this.file), constants.W_OK)
      await writeFileAtomic(this.file, text)
    } catch (err) {
      throw new MemdrainError(`cannot write pool file ${this.file}: ${(err as Error).message}`, {
        code: 'POOL_UNWRITABLE',
        exitCode: ExitCode.precondition,
        suggestions: [`Give this user write permission on ${path.dirname(this.file)} (memdrain replaces the file atomically).`],
      })
    }
    return revisionOf(text)
  }

  lock(command: string): Promise<HeldLock> {
    return acquireFileLock(`${this.file}.lock`, command)
  }

  clientReports(): Promise<unknown[]> {
    return readReportDir(this.file)
  }

  async lockHolder(): Promise<LockInfo | undefined> {
    const h = await fileLockHolder(`${this.file}.lock`)
    return h === undefined ? undefined : lockInfo(h)
  }

  async storedRevision(): Promise<{ revision: string; exists: boolean }> {
    const text = await readFile(this.file, 'utf8').catch(() => undefined)
    // Absent: the file store's save then writes without a revision check.
    return text === undefined ? { revision: '', exists: false } : { revision: revisionOf(text), exists: true }
  }
}

/** A pool given on the command line (--servers/--hash): read-only, nothing to lock. */
export class InlinePoolStore implements PoolStore {
  readonly writable = false
  readonly location = '--servers'
  constructor(private readonly pool: Pool) {}

  load(): Promise<PoolSnapshot> {
    return Promise.resolve({ pool: this.pool, revision: 'inline' })
  }

  save(): Promise<string> {
    return Promise.reject(
      new MemdrainError('this command records state in the pool, but the pool was given with --servers', {
        code: 'POOL_READ_ONLY',
        exitCode: ExitCode.usage,
        suggestions: ['Write the pool to a file (see README, "The pool file") and pass --pool FILE.'],
      }),
    )
  }

  clientReports(): Promise<unknown[]> {
    return Promise.resolve([])
  }

  lockHolder(): Promise<LockInfo | undefined> {
    return Promise.resolve(undefined)
  }

  storedRevision(): Promise<{ revision: string; exists: boolean }> {
    return Promise.resolve({ revision: 'inline', exists: true })
  }

  lock(): Promise<HeldLock> {
    return Promise.resolve({
      holder: { pid: process.pid, host: '', command: '', startedAt: new Date().toISOString(), token: 'inline' },
      release: () => Promise.resolve(),
    })
  }
}
