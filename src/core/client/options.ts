import { optionInvalid } from './errors.js'

/** How a key whose server is down is handled when nothing else holds it. */
export type FailoverMode = 'none' | 'next'

/**
 * Every option of PoolClient, with its default beside it. Times are in seconds, like memjs'.
 */
export interface PoolClientOptions {
  /** Seconds a request may wait for its reply before the server counts as failed (memjs `timeout`). */
  timeout?: number
  /** Seconds allowed to open a TCP connection (memjs `conntimeout`). */
  connectTimeout?: number
  /**
   * Seconds a failed server (connection error, timeout) is skipped. After that one operation
   * probes it again; success brings it back (`up`), failure marks it down for another period.
   */
  retryAfter?: number
  /**
   * `none` (default): a down server is skipped along its keys' chains, keeping the chain's order,
   * so that the keys are where they were when it returns; with replicas 1 a read of its keys is a
   * miss (event `unavailable`) and a write fails. `next`: a down link is replaced by the next live
   * server of the key's extended chain, like memjs' `failover: true` (which goes to the next server
   * in the list; for the memjs strategy that is the same server).
   */
  failover?: FailoverMode
  /**
   * Writes (set, add, delete, touch) resolve once this many servers of the chain answered; the
   * rest finish in the background. Unset: wait for every live link, succeed if at least one took it.
   */
  writeQuorum?: number | undefined
  /** Ask every live link of the chain at once and answer with the first hit (default: one after another). */
  parallelReads?: boolean
  /** Copy a value read further down the chain to the links that missed it, in the background. */
  readRepair?: boolean
  /**
   * While a server is `deactivating`: read through to a key's old owner on a miss and move what is
   * found; make writes delete the old copy. Off: deactivating servers are simply not used.
   */
  migrate?: boolean
  /** Expiry (seconds) of set/add when the call gives none; 0 = never. */
  defaultExpires?: number
  /**
   * The pool file to watch and report to. Set by `PoolClient.fromPoolFile`; with
   * `new PoolClient(pool, {poolFile})` the client watches and reports as well.
   */
  poolFile?: string | undefined
  /**
   * A pool kept in etcd (`etcd://HOST:PORT[,HOST:PORT]/PREFIX`), watched and reported to like a
   * pool file. Set by `PoolClient.fromPoolUrl`. Credentials and TLS: MEMDRAIN_ETCD_* variables.
   */
  poolUrl?: string | undefined
  /** Watch the pool file (fs.watch plus a periodic check) and switch topology when it changes. */
  watch?: boolean
  /** Seconds between two periodic checks of the pool file (fs.watch may miss changes on network file systems). */
  checkInterval?: number
  /**
   * Write this process' migration counts to `<poolFile>.clients/<host>-<pid>.json`, where
   * `memdrain status` and the drain's ratio find them (see `sumClientMigrations`).
   */
  report?: boolean
  /** Seconds between two writes of the migration report (only written when the counts changed). */
  reportInterval?: number
  /** TCP keep-alive on the connections (memjs `keepAlive`). */
  keepAlive?: boolean
  /**
   * Where memjs' own log lines go (it logs every failed request). Default: dropped; the client
   * reports failures as events (`down`, `error`) instead. memjs' default, console.log, would write
   * to the application's stdout.
   */
  logger?: ((line: string) => void) | undefined
}

export type ResolvedOptions = Required<Omit<PoolClientOptions, 'writeQuorum' | 'poolFile' | 'poolUrl' | 'logger'>> & {
  writeQuorum: number | undefined
  poolFile: string | undefined
  poolUrl: string | undefined
  logger: ((line: string) => void) | undefined
}

export const POOL_CLIENT_DEFAULTS = {
  timeout: 0.5,
  connectTimeout: 1,
  retryAfter: 5,
  failover: 'none',
  writeQuorum: undefined,
  parallelReads: false,
  readRepair: true,
  migrate: true,
  defaultExpires: 0,
  poolFile: undefined,
  poolUrl: undefined,
  watch: true,
  checkInterval: 2,
  report: true,
  reportInterval: 5,
  keepAlive: true,
  logger: undefined,
} as const satisfies ResolvedOptions

function positive(name: string, v: number): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw optionInvalid(name, `must be a number of seconds > 0, got ${JSON.stringify(v)}`)
  return v
}

export function resolveOptions(o: PoolClientOptions): ResolvedOptions {
  const r: ResolvedOptions = { ...POOL_CLIENT_DEFAULTS }
  for (const [k, v] of Object.entries(o)) {
    if (v !== undefined) (r as Record<string, unknown>)[k] = v
  }
  positive('timeout', r.timeout)
  positive('connectTimeout', r.connectTimeout)
  positive('retryAfter', r.retryAfter)
  positive('checkInterval', r.checkInterval)
  positive('reportInterval', r.reportInterval)
  if (r.failover !== 'none' && r.failover !== 'next') throw optionInvalid('failover', `must be "none" or "next", got ${JSON.stringify(r.failover)}`)
  if (r.writeQuorum !== undefined && (!Number.isInteger(r.writeQuorum) || r.writeQuorum < 1)) {
    throw optionInvalid('writeQuorum', `must be a whole number ≥ 1, got ${JSON.stringify(r.writeQuorum)}`)
  }
  if (!Number.isInteger(r.defaultExpires) || r.defaultExpires < 0) {
    throw optionInvalid('defaultExpires', `must be a whole number of seconds ≥ 0, got ${JSON.stringify(r.defaultExpires)}`)
  }
  return r
}
