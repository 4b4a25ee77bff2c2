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
  /** Where the hand-off stands (see HandoffPhase); absent in a record no job has run yet. */
  phase?: HandoffPhase | undefined
  /** Set once the copy hand-off's switch happened (the application no longer reads the source). */
  switchedAt?: string | undefined
  /**
   * Set once a dump of every source counted the keys to hand over: before it, "0 of 0 keys"
   * means nothing was counted, not that nothing is left (purge refuses such a record).
   */
  countedAt?: string | undefined
  /**
   * A drain whose placement is modulo has every server as a source (the owner of keys on the
   * servers that stay changes too): their figures, per server. The figures above are their sum.
   */
  sources?: Record<string, SourceRecord>
  finishedAt?: string
  /** Copy hand-off: the id written into its copy journal, so a rerun knows the journal it finds is this job's. */
  journalId?: string | undefined
}

/**
 * Where a pool change's hand-off stands, persisted in the pool record so that a rerun resumes
 * there whatever --spool-dir it is given: 'moving' (move hand-off), 'copying' (copy hand-off,
 * before the switch), 'switched' (applications read the new owners; catching up), 'caught-up'
 * (catch-up done; cleaning up and purging).
 */
export const HANDOFF_PHASES = ['moving', 'copying', 'switched', 'caught-up'] as const
export type HandoffPhase = (typeof HANDOFF_PHASES)[number]

/** Whether the applications already read the new owners (the copy hand-off switched, or the move hand-off). */
export function pastSwitch(phase: HandoffPhase | undefined): boolean {
  return phase === 'switched' || phase === 'caught-up'
}

/** One source server's figures in a pool change (as TransitionRecord's, per old server). */
export interface SourceRecord {
  /** Keys the first dump found that change owner; the denominator of the source's ratio. */
  keysAtStart: number
  moved: number
  inPlace: number
  skipped: Record<string, number>
  failed: number
  conflicts: number
  passes: number
  /** Keys pool-aware clients moved off this server during the change (their reports). */
  movedByClients?: number
  /** Copy hand-off: this source's catch-up finished (a second one would take its re-copies for application writes). */
  caughtUp?: boolean
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
  sources: Record<string, SourceRecord>
  /** Where the hand-off stands (see HandoffPhase). */
  phase?: HandoffPhase | undefined
  /** Copy hand-off: set once the applications read the new pool. */
  switchedAt?: string | undefined
  /** Set once the first dump of every source counted its keys. */
  countedAt?: string | undefined
  /** Copy hand-off: the id written into each source's copy journal (see TransitionRecord.journalId). */
  journalId?: string | undefined
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
