/** Events of PoolClient and the counters behind `client.stats()`. */

/** A key as the application gives it: a string (sent as UTF-8) or bytes. */
export type Key = string | Buffer

/** A server failed (connection error, timeout) and is skipped until `retryAt`. */
export interface DownEvent {
  server: string
  error: Error
  /** Epoch ms of the next probe. */
  retryAt: number
}

/** A server that was down answered again. */
export interface UpEvent {
  server: string
  downForMs: number
}

/** A value found further down a key's chain was copied to links that missed it. */
export interface RepairEvent {
  key: Key
  from: string
  to: string[]
}

/**
 * A key left its old server: read through and moved (`via: "read"`: added at `to`, deleted at
 * `from` if unchanged), or overwritten/added through the client, which deleted the old copy
 * (`via: "write"`). Both are counted in `movedByClients`.
 */
export interface MigratedEvent {
  key: Key
  from: string
  to: string[]
  via: 'read' | 'write'
}

/** The client switched to another version of the pool. */
export interface TopologyEvent {
  revision: string
  previousRevision: string
  hash: string
  replicas: number
  active: string[]
  deactivating: string[]
}

/** The pool store (etcd) stopped answering: the client keeps the topology it has (`revision`). */
export interface PoolUnreachableEvent {
  location: string
  error: Error
  /** The revision the client keeps placing keys with. */
  revision: string
  since: number
}

/** The pool store answers again (changes made meanwhile arrive through the watch). */
export interface PoolReachableEvent {
  location: string
  downForMs: number
}

/** No server of the key's chain could be asked (all down): a read answered a miss, a write failed. */
export interface UnavailableEvent {
  op: 'get' | 'set' | 'add' | 'delete' | 'touch'
  key: Key
  servers: string[]
}

/** What an `error` event is about (its first argument is the Error). */
export interface ErrorContext {
  /** `repair`, `migrate`, `write-cleanup`, `topology`, `report`, or an operation name. */
  during: string
  server?: string | undefined
  key?: Key | undefined
}

/**
 * Event map of PoolClient. `error` is emitted only when someone listens (an EventEmitter
 * `error` without a listener would throw): background work never crashes the application.
 */
export type PoolClientEvents = {
  down: [DownEvent]
  up: [UpEvent]
  repair: [RepairEvent]
  migrated: [MigratedEvent]
  topology: [TopologyEvent]
  unavailable: [UnavailableEvent]
  'pool-unreachable': [PoolUnreachableEvent]
  'pool-reachable': [PoolReachableEvent]
  error: [Error, ErrorContext]
}

/** Monotonic counters since the client was created. */
export interface PoolClientCounters {
  gets: number
  hits: number
  misses: number
  sets: number
  adds: number
  deletes: number
  touches: number
  /** Writes rejected (NO_SERVER_AVAILABLE, WRITE_FAILED). */
  writeFailures: number
  /** Requests that failed with a transport error (connection, timeout). */
  serverErrors: number
  /** Requests a server refused (value too large, out of memory...). */
  commandErrors: number
  /** Links skipped because their server was down. */
  skippedDown: number
  /** Operations whose whole chain was down. */
  unavailable: number
  /** Links used in place of a down one (`failover: "next"`). */
  failovers: number
  /** Reads that went on to a key's old server after missing at its current chain. */
  fallbackReads: number
  fallbackHits: number
  /** Keys moved after a read through (`migrated` events with via "read"). */
  migrated: number
  /** Old copies deleted by a write (`migrated` events with via "write"). */
  migratedByWrites: number
  /** Moves whose source changed or vanished between read and delete (the copy was withdrawn). */
  migrationConflicts: number
  migrationFailures: number
  /** Keys the meta protocol cannot name (over 186 bytes with a space or control byte): not moved or repaired. */
  migrationSkipped: number
  repairs: number
  repairFailures: number
  downEvents: number
  upEvents: number
  topologySwitches: number
}

export function newCounters(): PoolClientCounters {
  return {
    gets: 0,
    hits: 0,
    misses: 0,
    sets: 0,
    adds: 0,
    deletes: 0,
    touches: 0,
    writeFailures: 0,
    serverErrors: 0,
    commandErrors: 0,
    skippedDown: 0,
    unavailable: 0,
    failovers: 0,
    fallbackReads: 0,
    fallbackHits: 0,
    migrated: 0,
    migratedByWrites: 0,
    migrationConflicts: 0,
    migrationFailures: 0,
    migrationSkipped: 0,
    repairs: 0,
    repairFailures: 0,
    downEvents: 0,
    upEvents: 0,
    topologySwitches: 0,
  }
}

export interface ServerStats {
  state: 'up' | 'down'
  /** Role in the current pool. */
  role: 'active' | 'deactivating'
  requests: number
  errors: number
  /** Keys this client moved off the server (its share of `movedByClients`). */
  movedByClient: number
  downSince?: string
  retryAt?: string
  lastError?: string
}

export interface PoolClientStats extends PoolClientCounters {
  revision: string
  hash: string
  replicas: number
  /** Background tasks (repairs, moves, the rest of quorum writes) still running. */
  backgroundPending: number
  servers: Record<string, ServerStats>
}
