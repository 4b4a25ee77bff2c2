import { MemdrainError, ExitCode } from '../errors.js'
import { flushServer } from '../engine/engine.js'
import { transitionCounted, transitionedRatio } from './transition.js'
import { findServer, withServer } from './model.js'
import type { PoolStore } from './store.js'

export interface PurgeResult {
  server: string
  ratio: number | null
  threshold: number | null
  forced: boolean
  state: 'removed'
}

/**
 * flush_all on ONE server of the pool — never another — then mark it removed. Refuses an active
 * server, or one whose drain is below its threshold, unless forced.
 */
export async function purgeServer(store: PoolStore, server: string, force: boolean): Promise<PurgeResult> {
  const lock = await store.lock(`memdrain purge ${server}`)
  try {
    const snap = await store.load()
    const s = findServer(snap.pool, server)
    if (s === undefined) {
      throw new MemdrainError(`${server} is not in the pool ${store.location}; memdrain only purges servers of the pool`, {
        code: 'SERVER_NOT_IN_POOL',
        exitCode: ExitCode.usage,
      })
    }
    const ratio = s.transition === undefined ? null : transitionedRatio(s.transition)
    const threshold = s.transition?.threshold ?? null
    if (!force) {
      if (snap.pool.rebalance !== undefined) {
        throw new MemdrainError(`a rebalance is in progress in ${store.location}: ${s.address} may still hold keys it has to hand over`, {
          code: 'PURGE_REFUSED',
          exitCode: ExitCode.precondition,
          suggestions: ['Let the rebalance finish (`memdrain rebalance` resumes it; it purges the servers that leave), or pass --force.'],
        })
      }
      if (s.state === 'active') {
        throw new MemdrainError(`${s.address} is active: purging it would throw away keys the applications read`, {
          code: 'PURGE_REFUSED',
          exitCode: ExitCode.precondition,
          suggestions: [`Drain it first (memdrain drain ${s.address}), or pass --force.`],
        })
      }
      if (!transitionCounted(s.transition)) {
        // A record `mark` started reads "0 of 0 keys transitioned": nothing was counted, so nothing says the keys moved.
        throw new MemdrainError(`${s.address} is ${s.state} but no drain has counted its keys: purging it would throw away keys that were never moved`, {
          code: 'PURGE_REFUSED',
          exitCode: ExitCode.precondition,
          suggestions: [`Drain it (memdrain drain ${s.address}): it moves the keys, then purges; or pass --force to flush it anyway.`],
        })
      }
      if (ratio !== null && threshold !== null && ratio < threshold) {
        throw new MemdrainError(`${s.address} has transitioned ${(ratio * 100).toFixed(1)}% of its keys, below its threshold of ${(threshold * 100).toFixed(1)}%`, {
          code: 'PURGE_REFUSED',
          exitCode: ExitCode.precondition,
          suggestions: [`Run the drain again to move the rest (memdrain drain ${s.address}), or pass --force.`],
        })
      }
    }
    await flushServer(s.address, 'server to purge')
    const now = new Date().toISOString()
    const pool = withServer(snap.pool, s.address, (x) => ({
      ...x,
      state: 'removed',
      transition: x.transition === undefined ? undefined : { ...x.transition, updatedAt: now, finishedAt: x.transition.finishedAt ?? now },
    }))
    await store.save(pool, snap.revision)
    return { server: s.address, ratio, threshold, forced: force, state: 'removed' }
  } finally {
    await lock.release()
  }
}
