import type { JobEvent, JobKind } from '../core/engine/events.js'
import { ExitCode } from '../core/errors.js'
import { JobMonitor } from '../core/monitor/job-monitor.js'
import type { MetricsFile } from '../core/monitor/metrics.js'
import { createProgress, type ProgressView } from '../ui/progress.js'
import { usageError } from './base-command.js'

/**
 * What a job command shows and exports while the job runs: one JobMonitor fed with the job's
 * events, drawn by the progress view and, with --metrics-file, written as Prometheus text.
 */
export interface JobReport {
  event(e: JobEvent): void
  /** A line for the operator, above the bars. */
  log(line: string): void
  /** Stops drawing (the bars leave the screen); the metrics keep following the events. */
  stopDrawing(): void
  /** The job ended with this exit status (or threw: 'failed'): last metrics write, bars removed. The first call counts. */
  finish(status: number | 'failed'): Promise<void>
  /** Synchronous teardown right before the process exits (a second Ctrl-C). */
  abandon(): void
}

export interface JobReportOptions {
  job: JobKind
  label: string
  json: boolean
  /** From --metrics-file and --metrics-interval. */
  flags: { 'metrics-file'?: string | undefined; 'metrics-interval': number }
  onWarning: (message: string) => void
  /** false: nothing drawn (--quiet, rebalance --abort); the metrics are written all the same. */
  draw?: boolean
  /** --verbose: a progress line every second off a terminal. */
  verbose?: boolean
}

export async function startJobReport(opts: JobReportOptions): Promise<JobReport> {
  const file = opts.flags['metrics-file']
  const monitor = new JobMonitor(opts.job)
  let metrics: MetricsFile | undefined
  if (file !== undefined) {
    const { jobMetricsRegistry, MetricsFile } = await import('../core/monitor/metrics.js')
    metrics = new MetricsFile(file, jobMetricsRegistry(monitor), opts.flags['metrics-interval'] * 1000, (err) => opts.onWarning(`could not write the metrics file ${file}: ${err.message}`))
    try {
      await metrics.start()
    } catch (err) {
      throw usageError(`cannot write the metrics file ${file}: ${(err as Error).message}`, ['Give a path in a directory that exists and is writable, e.g. the textfile directory of node_exporter.'])
    }
  }
  const view: ProgressView = createProgress(monitor, {
    json: opts.json,
    label: opts.label,
    quiet: opts.draw === false,
    ...(opts.verbose === true ? { intervalSeconds: 1 } : {}),
  })
  let drawing = true
  let finished: Promise<void> | undefined
  return {
    event(e) {
      monitor.event(e)
      if (drawing) view.event(e)
    },
    log(line) {
      view.log(line)
    },
    stopDrawing() {
      drawing = false
      view.stop()
    },
    finish(status) {
      // The first call says how the job ended; the one in the command's `finally` then does nothing.
      finished ??= (async () => {
        view.stop()
        monitor.finish(status === 'failed' ? 'failed' : status === ExitCode.ok ? 'done' : status === ExitCode.interrupted ? 'interrupted' : status === ExitCode.partial ? 'partial' : 'failed')
        await metrics?.stop()
      })()
      return finished
    },
    abandon() {
      view.stop()
    },
  }
}
