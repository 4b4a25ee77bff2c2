import { fractionalWeights, type HashName } from '../placement/registry.js'
import type { PlacementServer } from '../placement/types.js'
import { ExitCode, MemdrainError } from '../errors.js'
import { parseAddress } from '../protocol/address.js'

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

/**
 * Where a pool was imported from (`memdrain pool import`): the proxy or router config the
 * applications read. The switch command gets that config rewritten for the new pool
 * (MEMDRAIN_NEW_CONFIG), keeping every other key of the file.
 */
export interface PoolOrigin {
  readonly format: ConfigFormat
  /** The config file, as an absolute path. */
  readonly file: string
  /** The pool's name in that file (a nutcracker.yml pool, an mcrouter "pools" entry). */
  readonly pool: string
}

export const CONFIG_FORMATS = ['twemproxy', 'mcrouter'] as const
export type ConfigFormat = (typeof CONFIG_FORMATS)[number]
/** What `pool export` writes: a config format, or a plain server list. */
export const EXPORT_FORMATS = [...CONFIG_FORMATS, 'servers'] as const
export type ExportFormat = (typeof EXPORT_FORMATS)[number]

export interface Pool {
  readonly hash: HashName
  readonly replicas: number
  readonly clients: ClientKind
  readonly servers: readonly PoolServer[]
  /** Present while a rebalance is in progress. */
  readonly rebalance?: RebalanceRecord | undefined
  readonly origin?: PoolOrigin | undefined
}

/** Servers that own keys: only `active` ones (a deactivating server is a source, never a destination). */
/** A transition that starts now: nothing moved yet. */
export function newTransition(threshold: number, handoff: 'move' | 'copy'): TransitionRecord {
  const now = new Date().toISOString()
  return { startedAt: now, updatedAt: now, keysAtStart: 0, moved: 0, inPlace: 0, movedByClients: 0, skipped: {}, failed: 0, conflicts: 0, threshold, handoff, passes: 0 }
}

/** Whether two servers are the same to every placement strategy (address, weight and the identity fields). */
export function samePlacementServer(a: PlacementServer, b: PlacementServer): boolean {
  return a.address === b.address && a.weight === b.weight && a.name === b.name && a.hostname === b.hostname && a.resolved === b.resolved
}

/** The fields of a server that placement reads, for copying a server into a new pool document. */
export function placementFields(s: PlacementServer): Record<string, unknown> {
  return {
    address: s.address,
    weight: s.weight,
    ...(s.name !== undefined ? { name: s.name } : {}),
    ...(s.hostname !== undefined ? { hostname: s.hostname } : {}),
    ...(s.resolved !== undefined ? { resolved: s.resolved } : {}),
  }
}

export function activeServers(pool: Pool): PoolServer[] {
  return pool.servers.filter((s) => s.state === 'active')
}

/**
 * The server a command argument names: an exact address first, then a name (surrounding
 * whitespace ignored). An argument that is one server's name and, written as an address,
 * another server's address (`cache-1` named, `cache-1:11211` listed) is refused as ambiguous.
 */
export function findServer(pool: Pool, argument: string): PoolServer | undefined {
  const text = argument.trim()
  const byAddress = pool.servers.find((s) => s.address === text)
  if (byAddress !== undefined) return byAddress
  const byName = pool.servers.find((s) => s.name === text)
  const key = addressKey(text)
  const alsoAddress = key === undefined ? undefined : pool.servers.find((s) => addressKey(s.address) === key)
  if (byName !== undefined && alsoAddress !== undefined && alsoAddress !== byName) {
    throw new MemdrainError(`"${text}" is ambiguous: it is the name of ${byName.address} and the address of ${alsoAddress.address}`, {
      code: 'AMBIGUOUS_SERVER',
      exitCode: ExitCode.usage,
      suggestions: [`Give the exact address: ${byName.address} or ${alsoAddress.address}.`, 'Rename the server whose name looks like an address.'],
    })
  }
  return byName
}

/** "host:port" with the host lower-cased and the default port filled in; undefined when `text` is no address. */
export function addressKey(text: string): string | undefined {
  try {
    const a = parseAddress(text)
    return `${a.host.toLowerCase()}:${a.port}`
  } catch {
    return undefined
  }
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
      // mcrouter-weighted-ch3 requires every weight (mcrouter's own default would be 0.5).
      ...(s.weight === 1 && !fractionalWeights(pool.hash) ? {} : { weight: s.weight }),
      ...(s.name === undefined ? {} : { name: s.name }),
      ...(s.hostname === undefined ? {} : { hostname: s.hostname }),
      ...(s.resolved === undefined ? {} : { resolved: s.resolved }),
      state: s.state,
      ...(s.transition === undefined ? {} : { transition: s.transition }),
    })),
    ...(pool.rebalance === undefined ? {} : { rebalance: { ...pool.rebalance, previous: poolToDocument(pool.rebalance.previous) } }),
    ...(pool.origin === undefined ? {} : { origin: { ...pool.origin } }),
  }
}
