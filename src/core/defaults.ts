/**
 * The defaults of every job, in one place: the engine falls back to them, the CLI flags show
 * them, the tests and benchmarks start from them. Change a default here and nowhere else.
 */
export const JOB_DEFAULTS = {
  /** Keys per pipelined batch (one round trip to the source, one per destination). */
  batchSize: 500,
  /** Batches in flight per source (each worker has its own connections). */
  inFlight: 4,
  /** Dump → move passes at most; a pass that moves nothing ends the job sooner. */
  maxPasses: 6,
  /** Move hand-off: seconds between changing the pool file and moving the first key (see HandoffJobOptions). */
  clientGraceSeconds: 3,
  /** Transitioned ratio at which a drain or rebalance switches and purges. */
  threshold: 0.95,
  /** Milliseconds between progress saves to the pool record. */
  checkpointIntervalMs: 5000,
  /** keys/s (0 = unthrottled). */
  rate: 20_000,
  /** bytes/s. */
  bandwidth: 50 * 1024 * 1024,
  /** Skip keys that expire within this many seconds. */
  minTtl: 2,
  /** A destination with less free memory than this fraction gets nothing more. */
  minFree: 0.1,
  /** After a pass in which a destination was down: how long to wait for it (ms). */
  downWaitMs: 10_000,
} as const
