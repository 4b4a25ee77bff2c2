import type { EnginePhase, JobEvent, JobKind } from '../engine/events.js'
import type { GuardState } from '../engine/target-guard.js'
import { etaSeconds, RateWindow } from './rate-window.js'

/**
 * The figures of a running job, from its events: what the progress display draws and what the
 * metrics file exports. One consumer of the events, two renderers, the same numbers.
 *
 * Totals come from the dumps (the plan: keys per destination), summed over sources, and never
 * go backwards: a later pass adds the keys it finds (missed by an earlier dump, or failed and
 * tried again) to what earlier passes handled. A source may run several engine jobs (a mirror
 * pass, a drain's sweep after a restart): each starts a fresh tally, folded into the figures of
 * the jobs before it, so counters only grow.
 */

/** What the job is doing, for people and for `memdrain_job_phase`. */
export type JobPhase = 'connect' | 'dump' | 'preflight' | 'grace' | 'move' | 'delta' | 'switch' | 'catch-up' | 'cleanup' | 'purge' | 'idle' | 'done' | 'partial' | 'interrupted' | 'failed'

export const JOB_PHASES: readonly JobPhase[] = ['connect', 'dump', 'preflight', 'grace', 'move', 'delta', 'switch', 'catch-up', 'cleanup', 'purge', 'idle', 'done', 'partial', 'interrupted', 'failed']

/** Outcomes of keys at a destination (skipped keys reach none: their destination is ''). */
export interface OutcomeCounts {
  moved: number
  inPlace: number
  failed: number
  skipped: number
  bytes: number
}

export interface DestinationView {
  address: string
  /** Keys routed here by the dumps so far (the plan, then what later passes found). */
  total: number
  /** Of them, handled (any outcome). */
  done: number
  moved: number
  inPlace: number
  failed: number
  bytes: number
  state: GuardState | undefined
  freeBytes: number | undefined
  limitBytes: number | undefined
}

export interface CatchUpView {
  checked: number
  total: number
  caughtUp: number
  invalidated: number
  keysPerSecond: number | undefined
  etaSeconds: number | undefined
  done: boolean
}

export interface JobSnapshot {
  job: JobKind
  phase: JobPhase
  /** Highest pass any source is in. */
  pass: number
  sources: number
  total: number
  done: number
  moved: number
  inPlace: number
  failed: number
  skipped: number
  bytes: number
  /** Recent rate (last ~10 s); undefined until measured. */
  keysPerSecond: number | undefined
  /** keys/s the throttle allows now; 0 = unthrottled. */
  rate: number
  /** The guard's factor: 1, 0.5 throttled, 0 paused. */
  rateFactor: number
  etaSeconds: number | undefined
  destinations: DestinationView[]
  catchUp: CatchUpView | undefined
  /** Transitioned ratio per server in transition (drain, rebalance). */
  transitioned: ReadonlyMap<string, number>
  /** Mirror: lag of the last pass, seconds. */
  lagSeconds: number | undefined
  mirrorPasses: number
  startedAt: number
}

interface Counts {
  moved: number
  inPlace: number
  failed: number
  bytes: number
}

const zero = (): Counts => ({ moved: 0, inPlace: 0, failed: 0, bytes: 0 })

/** Progress towards a total that never shrinks: earlier passes' handled keys + this pass's. */
class Progress {
  base = 0
  passTotal = 0
  passDone = 0
  total = 0

  newPass(toMove: number): void {
    this.base += this.passDone
    this.passDone = 0
    this.passTotal = toMove
    this.grow()
  }

  update(toMove: number, done: number): void {
    this.passTotal = toMove
    this.passDone = done
    this.grow()
  }

  get done(): number {
    return this.base + this.passDone
  }

  private grow(): void {
    this.total = Math.max(this.total, this.base + this.passTotal, this.done)
  }
}

class SourceState {
  phase: EnginePhase = 'connect'
  pass = 0
  readonly progress = new Progress()
  readonly perDestination = new Map<string, Progress>()
  /** Figures of the engine jobs this source finished (folded) and of the current one. */
  readonly folded = new Map<string, Counts>()
  readonly current = new Map<string, Counts>()
  /** Failures of the current job's earlier passes (its tally forgets them each pass). */
  readonly failedBefore = new Map<string, number>()
  foldedSkipped = 0
  currentSkipped = 0

  constructor(readonly address: string) {}

  destination(address: string): Progress {
    let p = this.perDestination.get(address)
    if (p === undefined) {
      p = new Progress()
      this.perDestination.set(address, p)
    }
    return p
  }

  /** A new pass of the engine job: the pass's handled keys start at 0. */
  newPass(pass: number): void {
    if (pass > 1) {
      // The tally forgets the last pass's failures now: keep them counted as attempts.
      for (const [d, c] of this.current) this.failedBefore.set(d, (this.failedBefore.get(d) ?? 0) + c.failed)
      for (const c of this.current.values()) c.failed = 0
    }
    this.progress.newPass(0)
    for (const p of this.perDestination.values()) p.newPass(0)
  }

  /** A new engine job on this source: what the last one did stays counted. */
  newJob(): void {
    this.progress.newPass(0)
    for (const p of this.perDestination.values()) p.newPass(0)
    for (const [d, c] of this.current) {
      const f = this.folded.get(d) ?? zero()
      f.moved += c.moved
      f.inPlace += c.inPlace
      f.failed += c.failed + (this.failedBefore.get(d) ?? 0)
      f.bytes += c.bytes
      this.folded.set(d, f)
    }
    this.current.clear()
    this.failedBefore.clear()
    this.foldedSkipped += this.currentSkipped
    this.currentSkipped = 0
  }

  /** Counts at `destination` over every job and pass of this source (failures are attempts that failed). */
  counts(destination: string): Counts {
    const f = this.folded.get(destination) ?? zero()
    const c = this.current.get(destination) ?? zero()
    return { moved: f.moved + c.moved, inPlace: f.inPlace + c.inPlace, failed: f.failed + c.failed + (this.failedBefore.get(destination) ?? 0), bytes: f.bytes + c.bytes }
  }

  get skipped(): number {
    return this.foldedSkipped + this.currentSkipped
  }
}

export class JobMonitor {
  private readonly sources = new Map<string, SourceState>()
  private readonly health = new Map<string, { state: GuardState; freeBytes: number; limitBytes: number }>()
  private readonly transitioned = new Map<string, number>()
  private readonly window = new RateWindow()
  private readonly catchUpWindow = new RateWindow()
  private stage: JobPhase | undefined
  private final: JobPhase | undefined
  private rate = 0
  private rateFactor = 1
  private catchUp: Omit<CatchUpView, 'keysPerSecond' | 'etaSeconds'> | undefined
  private lagSeconds: number | undefined
  private mirrorPasses = 0
  readonly startedAt: number

  constructor(
    readonly job: JobKind,
    private readonly now: () => number = () => Date.now(),
  ) {
    this.startedAt = now()
  }

  event(e: JobEvent): void {
    switch (e.type) {
      case 'phase': {
        const s = this.source(e.source)
        if (e.phase === 'connect') s.newJob()
        // A pass starts with its dump, and its keys may move while the dump goes on (the engine
        // streams): the pass's counts start here, not at \`dumped\` (which comes after moves began).
        if (e.phase === 'dump') s.newPass(e.pass)
        // Within a pass the steps only go forward: a source that moves while it dumps says
        // 'preflight' once its dump ends, with keys moving all along.
        const order: readonly EnginePhase[] = ['connect', 'dump', 'preflight', 'move']
        if (e.phase === 'connect' || e.phase === 'dump' || order.indexOf(e.phase) > order.indexOf(s.phase)) s.phase = e.phase
        s.pass = Math.max(s.pass, e.pass)
        this.stage = undefined
        return
      }
      case 'dumped': {
        const s = this.source(e.source)
        // The dump's final count of the pass: the totals the bars count against.
        s.progress.update(e.toMove, s.progress.passDone)
        for (const d of e.perDestination) {
          const p = s.destination(d.address)
          p.update(d.keys, p.passDone)
        }
        this.sample()
        return
      }
      case 'progress': {
        const s = this.source(e.source)
        s.pass = Math.max(s.pass, e.pass)
        s.progress.update(e.toMove, e.done)
        const t = e.tally
        t.perDestination.forEach((d, i) => {
          const p = s.destination(d.address)
          // While the dump still runs (moves stream behind it) its count so far is the total.
          p.update(Math.max(p.passTotal, e.listedByDestination[i] ?? 0), e.doneByDestination[i] ?? 0)
          s.current.set(d.address, { moved: d.keys, inPlace: d.inPlace, failed: d.failed, bytes: d.bytes })
        })
        s.currentSkipped = t.skippedTotal
        this.rate = e.rate
        this.rateFactor = e.rateFactor
        for (const h of e.health.values()) this.health.set(h.address, { state: h.state, freeBytes: h.freeBytes, limitBytes: h.limitBytes })
        this.sample()
        return
      }
      case 'guard':
        this.health.set(e.health.address, { state: e.health.state, freeBytes: e.health.freeBytes, limitBytes: e.health.limitBytes })
        return
      case 'pass-done':
        return
      case 'grace':
        this.stage = 'grace'
        return
      case 'switch':
        this.stage = e.phase === 'waiting' ? 'switch' : undefined
        return
      case 'catch-up': {
        const now = this.now()
        if (e.phase === 'start') this.catchUpWindow.clear()
        this.catchUpWindow.add(now, e.checked)
        this.catchUp = { checked: e.checked, total: e.total, caughtUp: e.caughtUp, invalidated: e.invalidated, done: e.phase === 'done' }
        this.stage = e.phase === 'done' ? undefined : 'catch-up'
        return
      }
      case 'delta':
        // Copy hand-off, before the switch: re-checking the copies the follower could not vouch for.
        this.stage = e.phase === 'start' ? 'delta' : undefined
        return
      case 'cleanup':
        this.stage = e.phase === 'start' ? 'cleanup' : undefined
        return
      case 'purged':
        this.stage = 'purge'
        return
      case 'transition':
        this.transitioned.set(e.server, e.ratio)
        return
      case 'mirror-pass':
        this.mirrorPasses++
        this.lagSeconds = e.result.lagMs / 1000
        // Between passes a mirror waits for the next one.
        this.stage = 'idle'
        return
      // Said to the operator (the progress view, the commands' notes); no figure of their own.
      case 'marked':
      case 'rebalance':
      case 'plan':
      case 'source-restarted':
      case 'peer':
      case 'peer-unreachable':
      case 'mirror-evictions':
      case 'mirror-passive-down':
      case 'mirror-passive-back':
      case 'journal-lost':
      case 'record-unsaved':
      case 'follow':
      case 'mirror-follow':
        return
    }
  }

  /** The job ended: its last phase is its outcome. */
  finish(outcome: 'done' | 'partial' | 'interrupted' | 'failed'): void {
    this.final = outcome
  }

  get phase(): JobPhase {
    if (this.final !== undefined) return this.final
    if (this.stage !== undefined) return this.stage
    // Several sources at once (rebalance): the furthest along step any of them is in.
    let best: EnginePhase = 'connect'
    const order: readonly EnginePhase[] = ['connect', 'dump', 'preflight', 'move']
    for (const s of this.sources.values()) if (order.indexOf(s.phase) > order.indexOf(best)) best = s.phase
    return best
  }

  snapshot(): JobSnapshot {
    let total = 0
    let done = 0
    let skipped = 0
    let pass = 0
    const dests = new Map<string, DestinationView>()
    for (const s of this.sources.values()) {
      total += s.progress.total
      done += s.progress.done
      skipped += s.skipped
      pass = Math.max(pass, s.pass)
      for (const [address, p] of s.perDestination) {
        const c = s.counts(address)
        const h = this.health.get(address)
        const d = dests.get(address) ?? { address, total: 0, done: 0, moved: 0, inPlace: 0, failed: 0, bytes: 0, state: h?.state, freeBytes: h?.freeBytes, limitBytes: h?.limitBytes }
        d.total += p.total
        d.done += p.done
        d.moved += c.moved
        d.inPlace += c.inPlace
        d.failed += c.failed
        d.bytes += c.bytes
        dests.set(address, d)
      }
    }
    const destinations = [...dests.values()]
    const sum = (k: 'moved' | 'inPlace' | 'failed' | 'bytes'): number => destinations.reduce((n, d) => n + d[k], 0)
    const recent = this.window.rate()
    const catchUpRate = this.catchUpWindow.rate()
    const catchUp = this.catchUp === undefined ? undefined : { ...this.catchUp, keysPerSecond: catchUpRate, etaSeconds: this.catchUp.done ? 0 : etaSeconds(this.catchUp.total - this.catchUp.checked, catchUpRate, 0) }
    return {
      job: this.job,
      phase: this.phase,
      pass,
      sources: this.sources.size,
      total,
      done,
      moved: sum('moved'),
      inPlace: sum('inPlace'),
      failed: sum('failed'),
      skipped,
      bytes: sum('bytes'),
      keysPerSecond: recent,
      rate: this.rate,
      rateFactor: this.rateFactor,
      etaSeconds: this.rateFactor === 0 ? undefined : etaSeconds(total - done, recent, this.rate),
      destinations,
      catchUp,
      transitioned: this.transitioned,
      lagSeconds: this.lagSeconds,
      mirrorPasses: this.mirrorPasses,
      startedAt: this.startedAt,
    }
  }

  /** Per source and destination, the outcome counts (for `memdrain_keys_total`); skipped keys under destination ''. */
  outcomes(): { source: string; destination: string; counts: OutcomeCounts }[] {
    const out: { source: string; destination: string; counts: OutcomeCounts }[] = []
    for (const s of this.sources.values()) {
      for (const address of s.perDestination.keys()) out.push({ source: s.address, destination: address, counts: { ...s.counts(address), skipped: 0 } })
      out.push({ source: s.address, destination: '', counts: { moved: 0, inPlace: 0, failed: 0, bytes: 0, skipped: s.skipped } })
    }
    return out
  }

  private source(address: string): SourceState {
    let s = this.sources.get(address)
    if (s === undefined) {
      s = new SourceState(address)
      this.sources.set(address, s)
    }
    return s
  }

  private sample(): void {
    let done = 0
    for (const s of this.sources.values()) done += s.progress.done
    this.window.add(this.now(), done)
  }
}
