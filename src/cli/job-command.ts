import { Flags } from '@oclif/core'
import type { JobEvent, JobKind } from '../core/engine/events.js'
import { logLine } from '../ui/log.js'
import { BaseCommand } from './base-command.js'
import { interruptOnSignals, metricsFlags } from './job-flags.js'
import { startJobReport } from './job-report.js'

/** How much a job says on stderr (its result and warnings are always printed). */
export const outputFlags = {
  quiet: Flags.boolean({ char: 'q', description: 'No progress and no log lines: warnings and the result only.', exclusive: ['verbose'], helpGroup: 'OUTPUT' }),
  verbose: Flags.boolean({ description: 'More log lines: progress every second off a terminal, every pass of a mirror.', exclusive: ['quiet'], helpGroup: 'OUTPUT' }),
}

export interface JobSpec<R> {
  /** The job's kind (the `job` label of the metrics). */
  job: JobKind
  /** Names the job in progress lines ("drain 10.0.0.3:11211"). */
  label: string
  flags: { quiet: boolean; verbose: boolean; 'metrics-file'?: string | undefined; 'metrics-interval': number }
  /** false: the job draws no progress (rebalance --abort). */
  progress?: boolean
  /**
   * Starts the job with the signal that Ctrl-C / SIGTERM aborts and the sink for its events;
   * `progress.stop()` removes the bars for good (a mirror after its first full copy), the
   * metrics keep following the events.
   */
  start: (ctx: { signal: AbortSignal; onEvent: (e: JobEvent) => void; progress: { stop(): void } }) => Promise<R>
  /** The result for people (stdout); not called with --json. */
  render: (result: R) => string
}

/**
 * The commands that run a job (drain, rebalance, warm, mirror): the first Ctrl-C or SIGTERM
 * stops the job cleanly (state saved, exit 69), the second at once; events feed one job report
 * (src/cli/job-report.ts): a JobMonitor drawn as progress (bars on a terminal, timestamped lines
 * otherwise, nothing with --quiet) and, with --metrics-file, written as Prometheus text. Notes
 * and log lines go above the bars; the bars step aside while the copy hand-off asks for Enter;
 * the report is finished (bars removed, last metrics written) before the result is printed; the
 * result's status becomes the exit code.
 */
export abstract class JobCommand<T> extends BaseCommand<T> {
  static override baseFlags = { ...BaseCommand.baseFlags, ...outputFlags, ...metricsFlags }

  protected async runJob<R extends { status: number }>(spec: JobSpec<R>): Promise<R> {
    this.verbosity = spec.flags.quiet ? 'quiet' : spec.flags.verbose ? 'verbose' : 'normal'
    const report = await startJobReport({
      job: spec.job,
      label: spec.label,
      json: this.jsonEnabled(),
      flags: spec.flags,
      onWarning: (m) => this.note(m),
      draw: spec.progress !== false && this.verbosity !== 'quiet',
      verbose: this.verbosity === 'verbose',
    })
    this.stderrLine = (line) => report.log(line)
    const interrupt = interruptOnSignals(report)
    try {
      const result = await spec.start({ signal: interrupt.signal, onEvent: (e) => report.event(e), progress: { stop: () => report.stopDrawing() } })
      await report.finish(result.status)
      this.status = result.status
      if (!this.jsonEnabled()) this.log(spec.render(result))
      return result
    } finally {
      // Thrown: the metrics say "failed" and the bars leave before oclif prints the error.
      await report.finish('failed')
      this.stderrLine = logLine
      interrupt.dispose()
    }
  }
}
