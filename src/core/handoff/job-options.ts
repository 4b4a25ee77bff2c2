import type { PoolStore } from '../pool/store.js'
import { jobKnobs, type JobKnobs } from '../engine/engine.js'

/** What every job with a hand-off (drain, rebalance) is configured with. */
export interface HandoffJobOptions extends JobKnobs {
  store: PoolStore
  handoff?: 'move' | 'copy' | undefined
  threshold: number
  purge: boolean
  dryRun: boolean
  /**
   * Move hand-off, on a fresh start: seconds between changing the pool file and moving the
   * first key. Pool-aware clients re-read the pool file every 2 s (checkInterval); one that has
   * not yet seen the change still writes the old owner, and a key it writes there after the
   * move would leave the moved (older) copy at the new owner. Default 3.
   */
  clientGraceSeconds?: number | undefined
  /** Allow the move hand-off on a pool whose clients are static (they would read stale or deleted values). */
  force?: boolean | undefined
}

/** The part of a job's options every source job (prepareSourceJob) takes as given. */
export function sourceJobSettings(opts: HandoffJobOptions) {
  return { store: 'add' as const, ...jobKnobs(opts) }
}
