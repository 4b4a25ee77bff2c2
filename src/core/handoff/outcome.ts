import { ExitCode } from '../errors.js'

/** What every job's result says about how it ended; `exitCodeFor` maps it to the one exit-code policy. */
export interface JobOutcome {
  dryRun: boolean
  interrupted: boolean
  /** The job did all it set out to do (a hand-off: switched, threshold reached, record closed). */
  finished: boolean
  /** Keys that failed (a later run retries them). */
  failed: number
  ratio: number
  threshold: number
  /** exitCodeFor(this). */
  status: number
}

/**
 * 0 = done and the application is fine; 68 = partial (below the threshold, failed keys, not
 * switched); 69 = interrupted, run again to resume. A plan (dry run) that got to the end is 0.
 */
export function exitCodeFor(o: Omit<JobOutcome, 'status' | 'ratio' | 'threshold'>): number {
  if (o.interrupted) return ExitCode.interrupted
  if (o.dryRun) return ExitCode.ok
  return !o.finished || o.failed > 0 ? ExitCode.partial : ExitCode.ok
}
