import { MemdrainError, ExitCode, isMemdrainError } from '../errors.js'
import { EtcdPoolStore } from './etcd-store.js'
import { poolToDocument, type Pool } from './model.js'
import { fileLockHolder } from './lock.js'
import { FilePoolStore, type PoolStore } from './store.js'

/** The pool as its file holds it: what `pool pull` prints and `pool push` stores. */
export function poolText(pool: Pool): string {
  return JSON.stringify(poolToDocument(pool), null, 2) + '\n'
}

export interface PushResult {
  from: string
  to: string
  /** The revision the pool was stored at. */
  revision: string
  /** Whether a pool was already stored there (and was replaced). */
  replaced: boolean
  servers: number
}

/**
 * Stores the pool read from `source` (validated) in `target`, under the target's lock (a job
 * running on that pool refuses the push) and on the revision read under it (compare-and-swap).
 */
export async function pushPool(source: PoolStore, target: PoolStore): Promise<PushResult> {
  const { pool } = await source.load()
  if (!target.writable) throw new MemdrainError(`cannot store a pool in ${target.location}`, { code: 'POOL_READ_ONLY', exitCode: ExitCode.usage })
  const lock = await target.lock(`memdrain pool push ${source.location}`)
  try {
    let expected: string
    let replaced = true
    if (target instanceof EtcdPoolStore) {
      expected = await target.currentRevision()
      replaced = expected !== '0'
    } else {
      try {
        expected = (await target.load()).revision
      } catch (err) {
        // Absent (or invalid, being replaced): the file store then writes without a revision check.
        if (!isMemdrainError(err) || (err.code !== 'POOL_NOT_FOUND' && err.code !== 'POOL_INVALID')) throw err
        replaced = err.code === 'POOL_INVALID'
        expected = ''
      }
    }
    const revision = await target.save(pool, expected)
    return { from: source.location, to: target.location, revision, replaced, servers: pool.servers.length }
  } finally {
    await lock.release()
  }
}

export interface LockInfo {
  command: string
  pid: number
  host: string
  startedAt: string
  /** A file lock whose holder (on this host) is gone: the next job takes it over. */
  stale?: boolean
}

/** Who holds the job lock of the pool now, if anyone: the lock file beside a pool file, or etcd's lock key. */
export async function currentLockHolder(store: PoolStore): Promise<LockInfo | undefined> {
  if (store instanceof FilePoolStore) {
    const h = await fileLockHolder(`${store.file}.lock`)
    return h === undefined ? undefined : { command: h.command, pid: h.pid, host: h.host, startedAt: h.startedAt, ...(h.stale ? { stale: true } : {}) }
  }
  if (!(store instanceof EtcdPoolStore)) return undefined
  const { kv } = await store.client.get(store.client.key('lock'))
  if (kv === undefined) return undefined
  try {
    const h = JSON.parse(kv.value) as LockInfo
    return { command: h.command, pid: h.pid, host: h.host, startedAt: h.startedAt }
  } catch {
    return undefined
  }
}
