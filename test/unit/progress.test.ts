import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { PassThrough } from 'node:stream'
import type { DestinationView, JobSnapshot } from '../../src/core/monitor/job-monitor.js'
import { JobMonitor } from '../../src/core/monitor/job-monitor.js'
import { Tally } from '../../src/core/engine/tally.js'
import { barRows, createProgress, describe as describeEvent, progressLines, progressSentence, wrap } from '../../src/ui/progress.js'
import { formatCount } from '../../src/ui/format.js'

function dest(address: string, done: number, total: number): DestinationView {
  return { address, done, total, moved: done, inPlace: 0, failed: 0, bytes: done * 1234, state: 'ok', freeBytes: 1 << 30, limitBytes: 1 << 30 }
}

function snapshot(over: Partial<JobSnapshot> = {}): JobSnapshot {
  return {
    job: 'drain',
    phase: 'move',
    pass: 1,
    sources: 1,
    total: 12_345_678,
    done: 1_234_567,
    moved: 1_200_000,
    inPlace: 34_567,
    failed: 0,
    skipped: 0,
    bytes: 1_234_567 * 1234,
    keysPerSecond: 19_870,
    rate: 20_000,
    rateFactor: 1,
    etaSeconds: 558,
    destinations: [dest('10.200.100.101:11211', 600_000, 6_000_000), dest('10.200.100.102:11211', 634_567, 6_345_678)],
    catchUp: undefined,
    transitioned: new Map(),
    lagSeconds: undefined,
    mirrorPasses: 0,
    startedAt: 0,
    ...over,
  }
}

const cols = (line: string): number => [...line].length

describe('progress display', () => {
  for (const width of [80, 160]) {
    it(`fits ${width} columns, with thousands separators, rate and ETA`, () => {
      const lines = progressLines(snapshot(), 'drain 10.200.100.100:11211', width)
      for (const l of lines) assert.ok(cols(l) <= width - 1, `${cols(l)} columns: ${l}`)
      assert.equal(lines.length, 4)
      assert.match(lines[1]!, /1,234,567\/12,345,678/)
      assert.match(lines[1]!, width >= 160 ? /ETA 9m18s {2}19,870\/s/ : /ETA 9m18s/)
      assert.match(lines[2]!, /→ 10\.200\.100\.101:11211 \[█+░+\] +10% +600,000\/6,000,000/)
      // The bars line up.
      const starts = lines.slice(1).map((l) => l.indexOf('['))
      assert.equal(new Set(starts).size, 1, lines.join('\n'))
    })
  }

  it('wraps log lines at spaces to fit the terminal (a word longer than a row is cut)', () => {
    const line = 'removing 127.0.0.1:11211 from a modulo pool (memjs) changes the owner of 75.0% of all keys'
    const rows = wrap(line, 40)
    assert.deepEqual(rows.join(' '), line)
    for (const r of rows) assert.ok([...r].length <= 39, r)
    assert.deepEqual(wrap('abcdefghij', 5), ['abcd', 'efgh', 'ij'])
    assert.deepEqual(wrap('short', 80), ['short'])
  })

  it('tells the plan of a change (its scope) as it happens', () => {
    const scope = { hash: 'memjs', kind: 'modulo' as const, sources: ['a:1', 'b:1'], leaving: ['a:1'], keysOnLeaving: 10, keysOnStaying: 5, stayingSources: 1 }
    const plan = { scope, keysListed: 20, keysToMove: 15, bytesToMove: 150, fraction: 0.75, estimatedFraction: 0.66, pairs: [], destinations: [], estimatedSeconds: null }
    const text = describeEvent({ type: 'plan', plan })
    assert.match(text ?? '', /removing a:1 from a modulo pool \(memjs\) changes the owner of 75\.0% of all keys/)
  })

  it('drops the extras, then the bars, on a narrow terminal', () => {
    const rows = [{ name: '  all', done: 5, total: 10, extra: ['ETA 5s', 'a long extra that does not fit'] }]
    assert.match(barRows(80, rows)[0]!, /\[.*ETA 5s {2}a long extra/)
    assert.doesNotMatch(barRows(40, rows)[0]!, /extra/)
    assert.match(barRows(40, rows)[0]!, /\[.*ETA 5s/)
    assert.doesNotMatch(barRows(20, rows)[0]!, /\[/)
    assert.match(barRows(26, rows)[0]!, /^ {2}all {2}50% {2}5\/10 {2}ETA 5s$/)
    for (const w of [20, 30, 40]) for (const l of barRows(w, rows)) assert.ok(cols(l) <= w - 1, l)
  })

  it('sums destinations that do not fit the rows', () => {
    const many = Array.from({ length: 30 }, (_, i) => dest(`10.0.0.${i}:11211`, 10, 100))
    const lines = progressLines(snapshot({ destinations: many }), 'rebalance', 80, 10)
    assert.equal(lines.length, 10)
    assert.match(lines[9]!, /\+23 more .* 230\/2,300/)
  })

  it('shows the catch-up with its own bar and ETA, and no bar while waiting for the switch', () => {
    const c = snapshot({ phase: 'catch-up', catchUp: { checked: 24_000, total: 200_000, caughtUp: 12, invalidated: 3, keysPerSecond: 10_000, etaSeconds: 17.6, done: false } })
    const lines = progressLines(c, 'drain x', 80)
    assert.equal(lines.length, 2)
    assert.match(lines[1]!, /catch-up \[.*\] +12% +24,000\/200,000 {2}ETA 18s {2}10,000\/s/)
    assert.match(progressSentence(c), /^catching up: 24,000\/200,000 checked \(12%\), 10,000\/s, ETA 18s; re-copied 12, invalidated 3$/)
    assert.equal(progressLines(snapshot({ phase: 'switch' }), 'drain x', 80).length, 1)
  })

  it('off a terminal: timestamped plain lines, the first as soon as keys move', () => {
    const out = new PassThrough()
    let text = ''
    out.on('data', (d: Buffer) => (text += d.toString()))
    const monitor = new JobMonitor('drain')
    const view = createProgress(monitor, { json: false, label: 'drain a', stream: out as unknown as NodeJS.WriteStream, now: () => new Date('2026-01-02T03:04:05.678Z') })
    const tally = new Tally(['b'])
    const events = [
      { type: 'phase', source: 'a', phase: 'connect', pass: 0 },
      { type: 'dumped', source: 'a', pass: 1, entries: 2000, toMove: 2000, bytes: 1, perDestination: [{ address: 'b', keys: 2000, bytes: 1 }] },
      { type: 'phase', source: 'a', phase: 'move', pass: 1 },
      { type: 'progress', source: 'a', pass: 1, toMove: 2000, done: 1500, doneByDestination: [1500], listedByDestination: [2000], tally, keysPerSecond: 0, rateFactor: 1, rate: 1000, health: new Map() },
    ] as const
    for (const e of events) {
      monitor.event(e)
      view.event(e)
    }
    view.stop()
    const lines = text.trim().split('\n')
    assert.equal(lines[0], '2026-01-02T03:04:05Z drain a: a pass 1: the dump listed 2,000 items, 2,000 to move (1 B)')
    assert.equal(lines[1], '2026-01-02T03:04:05Z drain a: moving keys: 1,500/2,000 keys (75%), ETA 1s; moved 0, in place 0, failed 0')
  })
})

describe('formatCount', () => {
  it("groups thousands as toLocaleString('en-US') does, rounding, '-' for no number", () => {
    for (const n of [0, 7, 999, 1000, -1000, 1234567, -987654321, 12.6, 999.5, 1e15, Number.MAX_SAFE_INTEGER]) {
      assert.equal(formatCount(n), Math.round(n).toLocaleString('en-US'), String(n))
    }
    assert.equal(formatCount(undefined), '-')
    assert.equal(formatCount(Number.NaN), '-')
  })
})
