import { Counter, Gauge, Registry } from 'prom-client'
import { writeFileAtomic } from '../pool/atomic-write.js'
import { JOB_PHASES, type JobMonitor } from './job-monitor.js'

/**
 * A job's figures in the Prometheus text exposition format, from its JobMonitor. Each job has
 * its own Registry (never prom-client's global one, which an application embedding memdrain
 * may use for itself). Values are read from the monitor when the text is made.
 */

/** Sets a counter to `value` (the monitor's counts only grow; a dip would be a reset to Prometheus, so it is ignored). */
export class CounterSetter<L extends string> {
  private readonly last = new Map<string, number>()

  constructor(private readonly counter: Counter<L>) {}

  set(labels: Record<L, string>, value: number): void {
    const key = JSON.stringify(labels)
    const before = this.last.get(key)
    if (before !== undefined && value <= before) return
    this.counter.inc(labels, value - (before ?? 0))
    this.last.set(key, value)
  }
}

export function jobMetricsRegistry(monitor: JobMonitor): Registry {
  const registry = new Registry()
  const job = monitor.job
  // Registered first, it reads the monitor once per exposition and sets every metric.
  new Gauge({
    name: 'memdrain_job_start_time_seconds',
    help: 'When the job started, Unix time.',
    labelNames: ['job'] as const,
    registers: [registry],
    collect() {
      this.set({ job }, Math.floor(monitor.startedAt / 1000))
      refresh()
    },
  })
  const keys = new Counter({
    name: 'memdrain_keys_total',
    help: 'Keys handled, per source, destination and outcome (moved, in_place, failed, skipped). failed counts failed attempts (a key a later pass moves counts there too); skipped keys (gone, expiring, too large) reach no destination (destination="").',
    labelNames: ['job', 'source', 'destination', 'outcome'] as const,
    registers: [registry],
  })
  const bytes = new Counter({
    name: 'memdrain_bytes_total',
    help: 'Value bytes written to destinations, per source and destination.',
    labelNames: ['job', 'source', 'destination'] as const,
    registers: [registry],
  })
  const setKeys = new CounterSetter(keys)
  const setBytes = new CounterSetter(bytes)
  const planned = new Gauge({ name: 'memdrain_keys_planned', help: 'Keys the dumps found to move, per destination (grows when a later pass finds more).', labelNames: ['job', 'destination'] as const, registers: [registry] })
  const handled = new Gauge({ name: 'memdrain_keys_handled', help: 'Of memdrain_keys_planned, keys handled (any outcome).', labelNames: ['job', 'destination'] as const, registers: [registry] })
  const ratio = new Gauge({ name: 'memdrain_transitioned_ratio', help: 'Transitioned ratio of a server in transition: (moved + in place + moved by clients) / live keys at start.', labelNames: ['job', 'server'] as const, registers: [registry] })
  const rate = new Gauge({ name: 'memdrain_throttle_rate', help: 'Keys per second the throttle allows now (--rate times the guard factor); 0 = unthrottled.', labelNames: ['job'] as const, registers: [registry] })
  const factor = new Gauge({ name: 'memdrain_throttle_factor', help: 'The guard\'s factor on the rate: 1 normal, 0.5 destinations evicting, 0 paused.', labelNames: ['job'] as const, registers: [registry] })
  const speed = new Gauge({ name: 'memdrain_keys_per_second', help: 'Keys handled per second over the last 10 seconds.', labelNames: ['job'] as const, registers: [registry] })
  const eta = new Gauge({ name: 'memdrain_eta_seconds', help: 'Seconds until the keys planned so far are handled, at the recent rate (never faster than the throttle); absent when unknown.', labelNames: ['job'] as const, registers: [registry] })
  const free = new Gauge({ name: 'memdrain_destination_free_bytes', help: 'Free room of a destination (what it can store without evicting), at the guard\'s last poll.', labelNames: ['job', 'server'] as const, registers: [registry] })
  const limit = new Gauge({ name: 'memdrain_destination_limit_bytes', help: 'Memory limit (limit_maxbytes) of a destination.', labelNames: ['job', 'server'] as const, registers: [registry] })
  const phase = new Gauge({ name: 'memdrain_job_phase', help: 'The job\'s phase: 1 for the current one, 0 for the others.', labelNames: ['job', 'phase'] as const, registers: [registry] })
  const pass = new Gauge({ name: 'memdrain_job_pass', help: 'The pass (dump and move) the job is in.', labelNames: ['job'] as const, registers: [registry] })
  const catchUp = new Gauge({ name: 'memdrain_catch_up_records', help: 'Copy hand-off catch-up: journal records in all (state="total") and checked (state="checked").', labelNames: ['job', 'state'] as const, registers: [registry] })
  const lag = new Gauge({ name: 'memdrain_lag_seconds', help: 'Mirror: the longest a change on the active can have waited to reach the passive, at the last pass.', labelNames: ['job'] as const, registers: [registry] })
  const mirrorPasses = new Counter({ name: 'memdrain_mirror_passes_total', help: 'Mirror passes completed.', labelNames: ['job'] as const, registers: [registry] })
  const setMirrorPasses = new CounterSetter(mirrorPasses)

  const refresh = (): void => {
    const s = monitor.snapshot()
    for (const o of monitor.outcomes()) {
      const l = { job, source: o.source, destination: o.destination }
      if (o.destination === '') {
        setKeys.set({ ...l, outcome: 'skipped' }, o.counts.skipped)
        continue
      }
      setKeys.set({ ...l, outcome: 'moved' }, o.counts.moved)
      setKeys.set({ ...l, outcome: 'in_place' }, o.counts.inPlace)
      setKeys.set({ ...l, outcome: 'failed' }, o.counts.failed)
      setBytes.set(l, o.counts.bytes)
    }
    for (const d of s.destinations) {
      planned.set({ job, destination: d.address }, d.total)
      handled.set({ job, destination: d.address }, d.done)
      if (d.freeBytes !== undefined) free.set({ job, server: d.address }, d.freeBytes)
      if (d.limitBytes !== undefined) limit.set({ job, server: d.address }, d.limitBytes)
    }
    for (const [server, r] of s.transitioned) ratio.set({ job, server }, r)
    rate.set({ job }, s.rate)
    factor.set({ job }, s.rateFactor)
    speed.set({ job }, s.keysPerSecond ?? 0)
    eta.reset()
    if (s.etaSeconds !== undefined) eta.set({ job }, s.etaSeconds)
    for (const p of JOB_PHASES) phase.set({ job, phase: p }, p === s.phase ? 1 : 0)
    pass.set({ job }, s.pass)
    if (s.catchUp !== undefined) {
      catchUp.set({ job, state: 'total' }, s.catchUp.total)
      catchUp.set({ job, state: 'checked' }, s.catchUp.checked)
    }
    if (job === 'mirror') {
      if (s.lagSeconds !== undefined) lag.set({ job }, s.lagSeconds)
      setMirrorPasses.set({ job }, s.mirrorPasses)
    }
  }
  return registry
}

/**
 * Writes a registry's exposition to a file every `intervalMs` and at stop(), atomically (a
 * temporary file beside it, then rename: node_exporter's textfile collector never reads half a
 * file; it reads only `*.prom` files, and the temporary name does not end so). Readable by
 * other users (0644): the exporter usually runs as its own user.
 */
export class MetricsFile {
  private timer: NodeJS.Timeout | undefined
  private writing: Promise<void> = Promise.resolve()
  private failedOnce = false

  constructor(
    readonly file: string,
    private readonly registry: Registry,
    private readonly intervalMs = 5000,
    private readonly onError: (err: Error) => void = () => undefined,
  ) {}

  /** Writes once (so that a path that cannot be written fails before the job starts), then every interval. */
  async start(): Promise<void> {
    await this.writeNow()
    this.timer = setInterval(() => void this.write(), this.intervalMs)
    this.timer.unref()
  }

  /** The last write, after the job's final figures. */
  async stop(): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer)
    this.timer = undefined
    await this.write()
  }

  private write(): Promise<void> {
    this.writing = this.writing.then(
      () => this.writeNow(),
      () => this.writeNow(),
    ).catch((err: unknown) => {
      // A full disk or a removed directory must not stop the job: say it once.
      if (!this.failedOnce) this.onError(err instanceof Error ? err : new Error(String(err)))
      this.failedOnce = true
    })
    return this.writing
  }

  private async writeNow(): Promise<void> {
    await writeFileAtomic(this.file, await this.registry.metrics(), 0o644)
  }
}
