import { MemdrainError, ExitCode } from '../errors.js'
import { activeServers, findServer, newTransition, withServer, type PoolServer, type ServerState, type TransitionRecord } from './model.js'

/** The drain's default --threshold, for a transition started by hand. */
const DEFAULT_THRESHOLD = 0.95
import type { PoolStore } from './store.js'

export interface MarkResult {
  server: string
  from: ServerState
  to: ServerState
}

/** Sets a server's state by hand, under the pool lock. Refuses to leave the pool without an active server. */
export async function markServer(store: PoolStore, server: string, to: ServerState): Promise<MarkResult> {
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
    // Marking a server deactivating starts its transition: pool-aware clients tag the keys they
    // move with its start, so the drain that follows counts them (and no earlier period's).
    const started = newTransition(DEFAULT_THRESHOLD, snap.pool.clients === 'pool-aware' ? 'move' : 'copy')
    const transition = (x: PoolServer): TransitionRecord | undefined => (to === 'active' ? undefined : to === 'deactivating' && x.transition === undefined ? started : x.transition)
    const pool = withServer(snap.pool, s.address, (x) => ({ ...x, state: to, transition: transition(x) }))
    await store.save(pool, snap.revision)
    return { server: s.address, from: s.state, to }
  } finally {
    await lock.release()
  }
}
