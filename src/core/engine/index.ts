/** The engine every job uses, for one source server (see README.md). */
export { connectChecked, flushServer, heldBy, jobKnobs, prepareSourceJob, prepareSources, refuseWithoutRoom, whileNotAnswering } from './engine.js'
export type { EngineEvent, JobKnobs, PreflightDestination, PreparedSourceJob, PreparedSources, SourceJobOptions, SourceJobResult } from './engine.js'
export { FingerprintSet } from './fingerprint-set.js'
export { KeyBatch } from './key-batch.js'
export { KeySpool, type SpoolOrder } from './spool.js'
export { Tally, addTally, type DestinationTally, type FailReason, type SkipReason } from './tally.js'
export { TokenBucket } from './throttle.js'
export type { RouteFn, CopiedFn } from './transfer.js'
