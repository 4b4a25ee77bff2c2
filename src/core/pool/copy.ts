import { MemdrainError, ExitCode } from '../errors.js'
import { poolToDocument, type Pool } from './model.js'
import type { LockInfo, PoolStore } from './store.js'

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
    // What is stored now, valid or not (a push may replace an invalid pool).
    const stored = await target.storedRevision()
    const revision = await target.save(pool, stored.revision)
    return { from: source.location, to: target.location, revision, replaced: stored.exists, servers: pool.servers.length }
  } finally {
    await lock.release()
  }
}

export type { LockInfo } from './store.js'

/** Who holds the job lock of a pool now, if anyone. */
export function currentLockHolder(store: PoolStore): Promise<LockInfo | undefined> {
  return store.lockHolder()
}
