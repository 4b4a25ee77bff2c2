import { Flags } from '@oclif/core'
import { createProgress, silentProgress, type ProgressView } from '../ui/progress.js'
import { BaseCommand } from './base-command.js'
import { interruptOnSignals } from './job-flags.js'

/** How much a job says on stderr (its result and warnings are always printed). */
export const outputFlags = {
  quiet: Flags.boolean({ char: 'q', description: 'No progress and no log lines: warnings and the result only.', exclusive: ['verbose'], helpGroup: 'OUTPUT' }),
  verbose: Flags.boolean({ description: 'More log lines: progress every second off a terminal, every pass of a mirror.', exclusive: ['quiet'], helpGroup: 'OUTPUT' }),
}

type ProgressEvent = Parameters<ProgressView['event']>[0]

export interface JobSpec<R> {
  /** Names the job in progress lines ("drain 10.0.0.3:11211"). */
  label: string
  flags: { quiet: boolean; verbose: boolean }
  /** false: the job draws no progress (rebalance --abort). */
  progress?: boolean
  /** Starts the job with the signal that Ctrl-C / SIGTERM aborts and the sink for its events. */
  start: (ctx: { signal: AbortSignal; onEvent: (e: ProgressEvent) => void; progress: ProgressView }) => Promise<R>
  /** The result for people (stdout); not called with --json. */
  render: (result: R) => string
}

/**
 * The commands that run a job (drain, rebalance, warm, mirror): the first Ctrl-C or SIGTERM
 * stops the job cleanly (state saved, exit 69), the second at once; events are drawn as progress
 * (bars on a terminal, timestamped lines otherwise, nothing with --quiet); the progress is torn
 * down before the result is printed; the result's status becomes the exit code.
 */
export abstract class JobCommand<T> extends BaseCommand<T> {
  static override baseFlags = { ...BaseCommand.baseFlags, ...outputFlags }

  protected async runJob<R extends { status: number }>(spec: JobSpec<R>): Promise<R> {
    this.verbosity = spec.flags.quiet ? 'quiet' : spec.flags.verbose ? 'verbose' : 'normal'
    const interrupt = interruptOnSignals()
    const newView = (): ProgressView =>
      spec.progress === false || this.verbosity === 'quiet'
        ? silentProgress
        : createProgress({ json: this.jsonEnabled(), label: spec.label, verbose: this.verbosity === 'verbose' })
    let view = newView()
    // What the command holds: always the current view (a new one after the switch).
    const progress: ProgressView = { event: (e) => view.event(e), stop: () => view.stop() }
    const onEvent = (e: ProgressEvent): void => {
      view.event(e)
      // The copy hand-off is about to ask for Enter: bars redrawn under the prompt would hide
      // it. They stop here; the catch-up after the switch draws on a new view.
      if (e.type === 'switch' && (e as { phase?: unknown }).phase === 'waiting') {
        view.stop()
        view = newView()
      }
    }
    try {
      const result = await spec.start({ signal: interrupt.signal, onEvent, progress })
      progress.stop()
      this.status = result.status
      if (!this.jsonEnabled()) this.log(spec.render(result))
      return result
    } finally {
      progress.stop()
      interrupt.dispose()
    }
  }
}
