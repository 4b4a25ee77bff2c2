/** The hand-off of a pool change (see README.md): the runner, and the copy hand-off's parts. */
export { runPoolChange, sourcesOf } from './runner.js'
export type { ChangePlan, ChangeScope, HandoffEvent, HandoffOutcome, HandoffRecord, PlanDestination, PlanPair, PoolChange, ResolvedChange, RunnerOptions, SourceOutcome } from './runner.js'
export { exitCodeFor, type JobOutcome } from './outcome.js'
export { sourceJobSettings, type HandoffJobOptions } from './job-options.js'
export { runCatchUp, type CatchUpResult } from './catch-up.js'
export { CopyJournal, copyJournalFile, removeCopyJournal } from './copy-journal.js'
export { deleteCopies, type StaleCopyResult } from './stale-copies.js'
export { deleteUnownedKeys } from './unowned-keys.js'
