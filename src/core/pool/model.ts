import type { HashName } from '../placement/registry.js'
import type { PlacementServer } from '../placement/types.js'

export const SERVER_STATES = ['active', 'deactivating', 'removed'] as const
export type ServerState = (typeof SERVER_STATES)[number]

/** How applications learn about a change: by reading the pool (move hand-off) or by a config push (copy hand-off). */
export const CLIENT_KINDS = ['static', 'pool-aware'] as const
export type ClientKind = (typeof CLIENT_KINDS)[number]

/**
 * The figures of a server in transition (being drained). Kept in the pool file so that a rerun
 * resumes and so that `status` and the application library can report progress.
 */
export interface TransitionRecord {
  startedAt: string
  updatedAt: string
  /** Live keys found by the first full dump; the denominator of the transitioned ratio. */
  keysAtStart: number
  moved: number
  inPlace: number
  /** Keys moved by pool-aware application clients (lazy migration), summed from the library. */
  movedByClients: number
  skipped: Record<string, number>
  failed: number
  conflicts: number
  threshold: number
  handoff: 'move' | 'copy'
  passes: number
  /** Set once the copy hand-off's switch happened (the application no longer reads the source). */
  switchedAt?: string
  finishedAt?: string
  /** Copy hand-off: the id written into its copy journal, so a rerun knows the journal it finds is this job's. */
  journalId?: string
}

/** One source server's figures in a rebalance (as TransitionRecord's, per old server). */
export interface RebalanceSourceRecord {
  /** Keys the first dump found that change owner; the denominator of the source's ratio. */
  keysAtStart: number
  moved: number
  inPlace: number
  skipped: Record<string, number>
  failed: number
  conflicts: number
  passes: number
}

/**
 * A rebalance in progress. The pool's servers are already the new pool (removed servers stay
 * listed as \`deactivating\` until purged); \`previous\` is the pool before it, so that pool-aware
 * clients read a key's old owner when its new owner misses, and \`rebalance --abort\` can restore
 * it before the switch.
 */
export interface RebalanceRecord {
  startedAt: string
  updatedAt: string
  handoff: 'move' | 'copy'
  threshold: number
  previous: Pool
  /** Per old server (address): what it handed over so far. */
  sources: Record<string, RebalanceSourceRecord>
  /** Copy hand-off: set once the applications read the new pool. */
  switchedAt?: string
  /** Copy hand-off: the id written into each source's copy journal (see TransitionRecord.journalId). */
  journalId?: string
}

export interface PoolServer extends PlacementServer {
  readonly state: ServerState
  readonly transition?: TransitionRecord | undefined
}

export interface Pool {
  readonly hash: HashName
  readonly replicas: number
  readonly clients: ClientKind
  readonly servers: readonly PoolServer[]
  /** Present while a rebalance is in progress. */
  readonly rebalance?: RebalanceRecord | undefined
}

/** Servers that own keys: only `active` ones (a deactivating server is a source, never a destination). */
/** A transition that starts now: nothing moved yet. */
export function newTransition(threshold: number, handoff: 'move' | 'copy'): TransitionRecord {
  const now = new Date().toISOString()
  return { startedAt: now, updatedAt: now, keysAtStart: 0, moved: 0, inPlace: 0, movedByClients: 0, skipped: {}, failed: 0, conflicts: 0, threshold, handoff, passes: 0 }
}

export function activeServers(pool: Pool): PoolServer[] {
  return pool.servers.filter((s) => s.state === 'active')
}

export function findServer(pool: Pool, address: string): PoolServer | undefined {
  return pool.servers.find((s) => s.address === address || s.name === address)
}

export function withServer(pool: Pool, address: string, change: (s: PoolServer) => PoolServer): Pool {
  return { ...pool, servers: pool.servers.map((s) => (s.address === address ? change(s) : s)) }
}

/** The pool as written to disk: defaults left out so a hand-written file stays as short as it was. */
export function poolToDocument(pool: Pool): Record<string, unknown> {
  return {
    hash: pool.hash,
    replicas: pool.replicas,
    ...(pool.clients === 'static' ? {} : { clients: pool.clients }),
    servers: pool.servers.map((s) => ({
      address: s.address,
      ...(s.weight === 1 ? {} : { weight: s.weight }),
      ...(s.name === undefined ? {} : { name: s.name }),
      state: s.state,
      ...(s.transition === undefined ? {} : { transition: s.transition }),
    })),
    ...(pool.rebalance === undefined ? {} : { rebalance: { ...pool.rebalance, previous: poolToDocument(pool.rebalance.previous) } }),
  }
}
