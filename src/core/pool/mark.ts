import { MemdrainError, ExitCode } from '../errors.js'
import { activeServers, findServer, newTransition, withServer, type PoolServer, type ServerState, type TransitionRecord } from './model.js'

import type { PoolStore } from './store.js'
import { JOB_DEFAULTS } from '../defaults.js'

export interface MarkResult {
  server: string
  from: ServerState
  to: ServerState
  /** Marking removed: the items the server held (stats curr_items), now unreachable; null when it did not answer. */
  unreachableKeys?: number | null | undefined
}

export interface MarkOptions {
  /**
   * Marking a server that holds keys `removed` makes them unreachable (nothing moves them):
   * asked with the count, under the lock; false = refused. Absent: refused when it holds keys.
   */
  confirmUnreachable?: ((keys: number, server: string) => Promise<boolean>) | undefined
  /** How many items a server holds (stats curr_items); null when it does not answer. */
  countKeys?: ((address: string) => Promise<number | null>) | undefined
}

/** Sets a server's state by hand, under the pool lock. Refuses to leave the pool without an active server. */
export async function markServer(store: PoolStore, server: string, to: ServerState, opts: MarkOptions = {}): Promise<MarkResult> {
  const lock = await store.lock(`memdrain mark ${server} ${to}`)
  try {
    const snap = await store.load()
    const s = findServer(snap.pool, server)
    if (s === undefined) {
      throw new MemdrainError(`${server} is not in the pool ${store.location}`, {
        code: 'SERVER_NOT_IN_POOL',
        exitCode: ExitCode.usage,
        suggestions: [`Servers in the pool: ${snap.pool.servers.map((x) => x.address).join(', ')}`],
      })
    }
    if (to !== 'active' && s.state === 'active' && activeServers(snap.pool).length === 1) {
      throw new MemdrainError(`${s.address} is the last active server: the pool would have no server to place keys on`, {
        code: 'LAST_ACTIVE_SERVER',
        exitCode: ExitCode.precondition,
        suggestions: ['Add or reactivate another server first.'],
      })
    }
    const remainingActive = activeServers(snap.pool).length - (s.state === 'active' ? 1 : 0) + (to === 'active' ? 1 : 0)
    if (snap.pool.replicas > remainingActive) {
      throw new MemdrainError(`the pool keeps ${snap.pool.replicas} copies of each key; only ${remainingActive} server(s) would be active`, {
        code: 'TOO_FEW_SERVERS',
        exitCode: ExitCode.precondition,
        suggestions: ['Lower "replicas" in the pool file first.'],
      })
    }
    let unreachableKeys: number | null | undefined
    if (to === 'removed' && s.state !== 'removed') {
      unreachableKeys = opts.countKeys === undefined ? null : await opts.countKeys(s.address)
      if (unreachableKeys !== null && unreachableKeys > 0) {
        const ok = opts.confirmUnreachable !== undefined && (await opts.confirmUnreachable(unreachableKeys, s.address))
        if (!ok) {
          throw new MemdrainError(`${s.address} holds ${unreachableKeys} key(s): marking it removed makes them unreachable (nothing moves them)`, {
            code: 'MARK_REFUSED',
            exitCode: ExitCode.precondition,
            suggestions: [`Drain it instead (memdrain drain ${s.address}): it moves the keys, then marks it removed.`, 'Or pass --yes to mark it removed anyway.'],
          })
        }
      }
    }
    // Marking a server deactivating starts its transition: pool-aware clients tag the keys they
    // move with its start, so the drain that follows counts them (and no earlier period's).
    const started = newTransition(JOB_DEFAULTS.threshold, snap.pool.clients === 'pool-aware' ? 'move' : 'copy')
    const transition = (x: PoolServer): TransitionRecord | undefined => (to === 'active' ? undefined : to === 'deactivating' && x.transition === undefined ? started : x.transition)
    const pool = withServer(snap.pool, s.address, (x) => ({ ...x, state: to, transition: transition(x) }))
    await store.save(pool, snap.revision)
    return { server: s.address, from: s.state, to, ...(unreachableKeys !== undefined ? { unreachableKeys } : {}) }
  } finally {
    await lock.release()
  }
}
