import type { PoolStore } from '../pool/store.js'
import type { SpoolOrder } from './spool.js'

/** What every job with a hand-off (drain, rebalance) is configured with. */
export interface HandoffJobOptions {
  store: PoolStore
  handoff?: 'move' | 'copy' | undefined
  threshold: number
  purge: boolean
  rate: number
  bandwidth: number
  minTtl: number
  minFree: number
  allowEvictions: boolean
  order: SpoolOrder
  spoolDir?: string | undefined
  dryRun: boolean
  signal?: AbortSignal | undefined
  batchSize?: number | undefined
  inFlight?: number | undefined
  /**
   * Move hand-off, on a fresh start: seconds between changing the pool file and moving the
   * first key. Pool-aware clients re-read the pool file every 2 s (checkInterval); one that has
   * not yet seen the change still writes the old owner, and a key it writes there after the
   * move would leave the moved (older) copy at the new owner. Default 3.
   */
  clientGraceSeconds?: number | undefined
  /** How long a pass waits for a destination that is down before the next pass (default 10 s; tests shorten it). */
  downWaitMs?: number | undefined
}

/** The part of a job's options every source job (runSourceJob) takes as given. */
export function sourceJobSettings(opts: HandoffJobOptions) {
  return {
    store: 'add' as const,
    order: opts.order,
    spoolDir: opts.spoolDir,
    rate: opts.rate,
    bandwidth: opts.bandwidth,
    minTtl: opts.minTtl,
    minFree: opts.minFree,
    allowEvictions: opts.allowEvictions,
    signal: opts.signal,
    batchSize: opts.batchSize,
    inFlight: opts.inFlight,
    downWaitMs: opts.downWaitMs,
  }
}
