import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import type { EngineEvent, JobEvent } from '../../src/core/engine/events.js'
import { Tally } from '../../src/core/engine/tally.js'
import type { DestinationHealth } from '../../src/core/engine/target-guard.js'
import { JobMonitor } from '../../src/core/monitor/job-monitor.js'
import { etaSeconds, RateWindow } from '../../src/core/monitor/rate-window.js'

/** Feeds a JobMonitor the events the engine emits, on a clock the test moves. */
class Feed {
  t = 1_000_000
  readonly monitor: JobMonitor
  readonly tallies = new Map<string, Tally>()
  constructor(job: 'drain' | 'rebalance' | 'warm' | 'mirror' = 'drain') {
    this.monitor = new JobMonitor(job, () => this.t)
  }
  send(e: JobEvent): void {
    this.monitor.event(e)
  }
  /** A new engine job on `source` (its tally starts at zero). */
  connect(source: string, targets: string[]): Tally {
    const t = new Tally(targets)
    this.tallies.set(source, t)
    this.send({ type: 'phase', source, phase: 'connect', pass: 0 })
    return t
  }
  /** The engine says a pass starts with its dump, before any key of it moves. */
  dumping(source: string, pass: number): void {
    this.send({ type: 'phase', source, phase: 'dump', pass })
  }
  dumped(source: string, pass: number, perDestination: Record<string, number>, opts: { streamed?: boolean } = {}): void {
    if (opts.streamed !== true) this.dumping(source, pass)
    const toMove = Object.values(perDestination).reduce((a, b) => a + b, 0)
    this.send({ type: 'dumped', source, pass, entries: toMove, toMove, bytes: toMove * 100, perDestination: Object.entries(perDestination).map(([address, keys]) => ({ address, keys, bytes: keys * 100 })) })
    this.send({ type: 'phase', source, phase: 'move', pass })
  }
  progress(source: string, pass: number, toMove: number, doneByDestination: number[], opts: { rate?: number; rateFactor?: number; listed?: number[] } = {}): void {
    const tally = this.tallies.get(source)!
    const e: Extract<EngineEvent, { type: 'progress' }> = {
      type: 'progress',
      source,
      pass,
      toMove,
      done: doneByDestination.reduce((a, b) => a + b, 0),
      doneByDestination,
      listedByDestination: opts.listed ?? doneByDestination.map(() => 0),
      tally,
      keysPerSecond: 0,
      rateFactor: opts.rateFactor ?? 1,
      rate: opts.rate ?? 0,
      health: new Map<string, DestinationHealth>(),
    }
    this.send(e)
  }
}

describe('JobMonitor', () => {
  it('per-destination totals come from the dump (the plan), not the overall total', () => {
    const f = new Feed()
    const t = f.connect('s', ['a', 'b'])
    f.dumped('s', 1, { a: 700, b: 300 })
    t.moved = 100
    t.perDestination[0]!.keys = 60
    t.perDestination[1]!.keys = 40
    f.progress('s', 1, 1000, [60, 40])
    const s = f.monitor.snapshot()
    assert.equal(s.total, 1000)
    assert.equal(s.done, 100)
    assert.deepEqual(
      s.destinations.map((d) => [d.address, d.done, d.total]),
      [
        ['a', 60, 700],
        ['b', 40, 300],
      ],
    )
  })

  it('a pass whose keys move while its dump goes on (streaming) counts each key once', () => {
    const f = new Feed()
    const t = f.connect('s', ['a'])
    f.dumping('s', 1)
    // Keys move before the dump is over: the total so far is what the dump listed.
    t.perDestination[0]!.keys = 300
    f.progress('s', 1, 500, [300], { listed: [500] })
    let s = f.monitor.snapshot()
    assert.deepEqual([s.done, s.total], [300, 500])
    assert.deepEqual([s.destinations[0]!.done, s.destinations[0]!.total], [300, 500])
    // The dump ends: its count is the total; what moved already stays counted once.
    f.dumped('s', 1, { a: 1000 }, { streamed: true })
    s = f.monitor.snapshot()
    assert.deepEqual([s.done, s.total], [300, 1000])
    assert.deepEqual([s.destinations[0]!.done, s.destinations[0]!.total], [300, 1000])
    t.perDestination[0]!.keys = 1000
    f.progress('s', 1, 1000, [1000])
    s = f.monitor.snapshot()
    assert.deepEqual([s.done, s.total], [1000, 1000])
  })

  it('totals never go backwards between passes; a later pass adds what it finds', () => {
    const f = new Feed()
    const t = f.connect('s', ['a'])
    f.dumped('s', 1, { a: 1000 })
    t.perDestination[0]!.keys = 990
    t.perDestination[0]!.failed = 10
    t.failedBy['destination-down'] = 10
    f.progress('s', 1, 1000, [1000])
    let s = f.monitor.snapshot()
    assert.deepEqual([s.done, s.total], [1000, 1000])
    // Pass 2 lists the 10 failed keys and 5 the first dump missed: the total grows, never resets.
    f.dumped('s', 2, { a: 15 })
    s = f.monitor.snapshot()
    assert.deepEqual([s.done, s.total], [1000, 1015])
    assert.equal(s.destinations[0]!.total, 1015)
    t.forgetFailures()
    t.perDestination[0]!.keys = 1005
    f.progress('s', 2, 15, [15])
    s = f.monitor.snapshot()
    assert.deepEqual([s.done, s.total], [1015, 1015])
    // The failures of pass 1 stay counted as failed attempts for the metrics.
    assert.equal(s.destinations[0]!.failed, 10)
    // A pass 3 that finds nothing changes no total.
    f.dumped('s', 3, { a: 0 })
    s = f.monitor.snapshot()
    assert.deepEqual([s.done, s.total], [1015, 1015])
  })

  it('adds up the sources of a rebalance, per destination', () => {
    const f = new Feed('rebalance')
    f.connect('s1', ['a', 'b'])
    f.connect('s2', ['a', 'b'])
    f.dumped('s1', 1, { a: 0, b: 500 })
    f.dumped('s2', 1, { a: 200, b: 300 })
    f.progress('s1', 1, 500, [0, 250])
    f.progress('s2', 1, 500, [100, 100])
    const s = f.monitor.snapshot()
    assert.deepEqual([s.done, s.total, s.sources], [450, 1000, 2])
    assert.deepEqual(
      s.destinations.map((d) => [d.address, d.done, d.total]),
      [
        ['a', 100, 200],
        ['b', 350, 800],
      ],
    )
  })

  it('folds a new engine job on the same source (a mirror pass, a drain sweep): counts only grow', () => {
    const f = new Feed('mirror')
    let t = f.connect('act', ['pas'])
    f.dumped('act', 1, { pas: 100 })
    t.moved = 100
    t.perDestination[0]!.keys = 100
    t.perDestination[0]!.bytes = 1000
    f.progress('act', 1, 100, [100])
    t = f.connect('act', ['pas'])
    f.dumped('act', 1, { pas: 7 })
    t.moved = 3
    t.perDestination[0]!.keys = 3
    t.perDestination[0]!.bytes = 30
    f.progress('act', 1, 7, [3])
    const s = f.monitor.snapshot()
    assert.deepEqual([s.done, s.total, s.moved, s.bytes], [103, 107, 103, 1030])
    const o = f.monitor.outcomes().find((x) => x.destination === 'pas')!
    assert.deepEqual([o.counts.moved, o.counts.bytes], [103, 1030])
  })

  it('ETA: keys left at the recent rate, never faster than the throttle; the throttle before any rate is measured', () => {
    const f = new Feed()
    const t = f.connect('s', ['a'])
    f.dumped('s', 1, { a: 100_000 })
    f.progress('s', 1, 100_000, [0], { rate: 10_000 })
    // Nothing measured yet: 100,000 keys at the throttle's 10,000/s.
    assert.equal(f.monitor.snapshot().etaSeconds, 10)
    // 5 s at 8,000/s: 60,000 left at 8,000/s.
    for (let i = 1; i <= 5; i++) {
      f.t += 1000
      t.perDestination[0]!.keys = i * 8000
      f.progress('s', 1, 100_000, [i * 8000], { rate: 10_000 })
    }
    let s = f.monitor.snapshot()
    assert.equal(Math.round(s.keysPerSecond!), 8000)
    assert.equal(s.etaSeconds, 60_000 / 8000)
    // The guard halves the rate: at once the ETA uses 5,000/s, though the window still says 8,000.
    f.progress('s', 1, 100_000, [40_000], { rate: 5000, rateFactor: 0.5 })
    s = f.monitor.snapshot()
    assert.equal(s.etaSeconds, 60_000 / 5000)
    // Paused: no ETA.
    f.progress('s', 1, 100_000, [40_000], { rate: 0, rateFactor: 0 })
    assert.equal(f.monitor.snapshot().etaSeconds, undefined)
  })

  it('follows the phases: grace, move, switch, catch-up (with its own ETA), purge, outcome', () => {
    const f = new Feed()
    f.connect('s', ['a'])
    assert.equal(f.monitor.phase, 'connect')
    f.send({ type: 'phase', source: 's', phase: 'dump', pass: 1 })
    assert.equal(f.monitor.phase, 'dump')
    f.send({ type: 'grace', seconds: 3 })
    assert.equal(f.monitor.phase, 'grace')
    f.send({ type: 'phase', source: 's', phase: 'move', pass: 1 })
    assert.equal(f.monitor.phase, 'move')
    f.send({ type: 'switch', phase: 'waiting' })
    assert.equal(f.monitor.phase, 'switch')
    f.send({ type: 'switch', phase: 'done' })
    f.send({ type: 'catch-up', phase: 'start', checked: 0, total: 20_000, caughtUp: 0, invalidated: 0 })
    for (let i = 1; i <= 3; i++) {
      f.t += 1000
      f.send({ type: 'catch-up', phase: 'progress', checked: i * 2000, total: 20_000, caughtUp: i, invalidated: 0 })
    }
    const s = f.monitor.snapshot()
    assert.equal(s.phase, 'catch-up')
    assert.equal(Math.round(s.catchUp!.keysPerSecond!), 2000)
    assert.equal(s.catchUp!.etaSeconds, 14_000 / 2000)
    f.send({ type: 'purged', server: 's' })
    assert.equal(f.monitor.phase, 'purge')
    f.monitor.finish('done')
    assert.equal(f.monitor.phase, 'done')
  })
})

describe('RateWindow and etaSeconds', () => {
  it('measures over the recent window only', () => {
    const w = new RateWindow(10_000)
    let t = 0
    let v = 0
    w.add(t, v)
    assert.equal(w.rate(), undefined)
    // 20 s at 1,000 keys/s, then 10 s at 100 keys/s: the window sees only the slow part.
    for (let i = 0; i < 20; i++) w.add((t += 1000), (v += 1000))
    assert.equal(w.rate(), 1000)
    for (let i = 0; i < 10; i++) w.add((t += 1000), (v += 100))
    assert.equal(w.rate(), 100)
  })

  it('eta is 0 with nothing left, unknown without a rate', () => {
    assert.equal(etaSeconds(0, undefined, 0), 0)
    assert.equal(etaSeconds(10, undefined, 0), undefined)
    assert.equal(etaSeconds(10, 5, 0), 2)
    assert.equal(etaSeconds(10, 5, 2), 5)
  })
})
