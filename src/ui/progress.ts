import cliProgress from 'cli-progress'
import type { JobEvent } from '../core/engine/events.js'
import type { JobMonitor, JobPhase, JobSnapshot } from '../core/monitor/job-monitor.js'
import { formatBytes, formatCount, formatDuration } from './format.js'
import { describeScope } from './plan-summary.js'
import { logLine } from './log.js'

/**
 * Draws a job on stderr from its JobMonitor: on a terminal a status line and bars (overall,
 * then one per destination, or the catch-up) redrawn in place by a cli-progress multibar; off
 * a terminal (or with --json) plain timestamped lines, one every few seconds plus one per
 * event worth knowing. Log lines go through the view (above the bars, never through them);
 * stop() leaves nothing of the bars on screen. The bars step aside while the job waits for the
 * operator (the copy hand-off's "press Enter").
 */
export interface ProgressView {
  /** Call after the monitor has seen `e`. */
  event(e: JobEvent): void
  /** A line for the operator (a warning, a note), printed above the bars. */
  log(line: string): void
  /** Removes the bars and draws nothing more; idempotent, synchronous (safe right before exit). */
  stop(): void
}

export interface ProgressOptions {
  json: boolean
  label: string
  stream?: NodeJS.WriteStream
  /** Plain lines: seconds between two progress lines (default 5). */
  intervalSeconds?: number
  /** Time source for plain lines' timestamps (tests). */
  now?: () => Date
  /** --quiet (or a job that draws no progress): nothing drawn; log lines (warnings) still printed. */
  quiet?: boolean
}

export function isTerminal(stream: NodeJS.WriteStream = process.stderr): boolean {
  return stream.isTTY === true && process.env.TERM !== 'dumb'
}

export function createProgress(monitor: JobMonitor, opts: ProgressOptions): ProgressView {
  const stream = opts.stream ?? process.stderr
  if (opts.quiet === true) return { event() {}, log: logLine, stop() {} }
  if (isTerminal(stream) && !opts.json) return new BarView(monitor, opts.label, stream)
  return new PlainView(monitor, opts.label, stream, opts.json, (opts.intervalSeconds ?? 5) * 1000, opts.now ?? (() => new Date()))
}

const PHASE_TEXT: Record<JobPhase, string> = {
  connect: 'connecting',
  dump: 'listing keys (metadump)',
  preflight: 'checking room',
  grace: 'waiting for clients to read the new pool',
  move: 'moving keys',
  delta: 'checking the copies before the switch',
  switch: 'waiting for the switch',
  'catch-up': 'catching up',
  cleanup: 'deleting stale copies',
  purge: 'purging',
  idle: 'waiting for the next pass',
  done: 'done',
  partial: 'partly done',
  interrupted: 'interrupted',
  failed: 'failed',
}

export function phaseText(s: JobSnapshot): string {
  const passText = s.pass > 1 && (s.phase === 'dump' || s.phase === 'move') ? ` (pass ${s.pass})` : ''
  return PHASE_TEXT[s.phase] + passText
}

/** "ETA 1m05s", "ETA paused", or '' when unknown. */
function etaText(eta: number | undefined, paused: boolean): string {
  if (paused) return 'paused'
  return eta === undefined ? '' : `ETA ${formatDuration(eta)}`
}

function rateText(kps: number | undefined): string {
  return kps === undefined ? '' : `${formatCount(kps)}/s`
}

function percent(done: number, total: number): string {
  if (total <= 0) return done > 0 ? '100%' : '  0%'
  return `${Math.min(100, Math.floor((done * 100) / total))}%`.padStart(4)
}

/** Cuts a line to `width` columns (the terminal's last column is left free: writing it would wrap). */
export function clip(line: string, width: number): string {
  const max = Math.max(1, width - 1)
  const chars = [...line]
  return chars.length <= max ? line : chars.slice(0, max - 1).join('') + '…'
}

/**
 * Splits a line into lines of at most `width - 1` columns, at spaces where it can: on a
 * terminal a line that wraps by itself takes a row the bars' redraw does not count.
 */
export function wrap(line: string, width: number): string[] {
  const max = Math.max(1, width - 1)
  const out: string[] = []
  let cur = ''
  for (const word of line.split(' ')) {
    const next = cur === '' ? word : `${cur} ${word}`
    if ([...next].length <= max) {
      cur = next
      continue
    }
    if (cur !== '') out.push(cur)
    let rest = [...word]
    while (rest.length > max) {
      out.push(rest.slice(0, max).join(''))
      rest = rest.slice(max)
    }
    cur = rest.join('')
  }
  out.push(cur)
  return out
}

export interface BarRow {
  name: string
  done: number
  total: number
  /** ETA, rate, bytes…, most important first: the last ones go first when the line would not fit. */
  extra: readonly string[]
}

/**
 * Bar rows as aligned columns, `name [████░░░░]  45%  done/total  extra`, each fitted to
 * `width`: the bars (all the same length) shrink first, down to 10 cells, then the least
 * important extras go, then the bars; a line still too long is cut.
 */
export function barRows(width: number, rows: readonly BarRow[]): string[] {
  const avail = Math.max(1, width - 1)
  const len = (t: string): number => [...t].length
  const nameWidth = Math.max(0, ...rows.map((r) => len(r.name)))
  const counts = rows.map((r) => `${percent(r.done, r.total)}  ${formatCount(r.done)}/${formatCount(r.total)}`)
  const countsWidth = Math.max(0, ...counts.map(len))
  const bar = (ratio: number, cells: number): string => {
    const full = Math.round(Math.min(1, Math.max(0, ratio)) * cells)
    return `[${'█'.repeat(full)}${'░'.repeat(cells - full)}] `
  }
  const extrasOf = (r: BarRow, k: number): string => {
    const kept = r.extra.filter((x) => x !== '').slice(0, k)
    return kept.length === 0 ? '' : `  ${kept.join('  ')}`
  }
  const render = (k: number, cells: number): string[] =>
    rows.map((r, i) => clip(`${r.name.padEnd(nameWidth)} ${cells >= 10 ? bar(r.total > 0 ? r.done / r.total : 0, cells) : ''}${counts[i]!.padStart(countsWidth)}${extrasOf(r, k)}`, width))
  const most = Math.max(0, ...rows.map((r) => r.extra.length))
  const fixed = nameWidth + 1 + 3 + countsWidth
  for (let k = most; k >= 0; k--) {
    const cells = Math.min(40, avail - fixed - Math.max(0, ...rows.map((r) => len(extrasOf(r, k)))))
    if (cells >= 10) return render(k, cells)
  }
  // No room for a bar: the figures alone, with what extras fit.
  for (let k = most; k > 0; k--) {
    if (fixed - 3 + Math.max(0, ...rows.map((r) => len(extrasOf(r, k)))) <= avail) return render(k, 0)
  }
  return render(0, 0)
}

/**
 * The lines a terminal shows for a snapshot: a status line, then bars. At most `rows` lines
 * (destinations beyond that are summed into one line), each at most `width - 1` columns.
 */
export function progressLines(s: JobSnapshot, label: string, width: number, rows = 24): string[] {
  const figures = [`moved ${formatCount(s.moved)}`, `in place ${formatCount(s.inPlace)}`]
  if (s.failed > 0) figures.push(`failed ${formatCount(s.failed)}`)
  if (s.skipped > 0) figures.push(`skipped ${formatCount(s.skipped)}`)
  const troubled = s.destinations.filter((d) => d.state !== undefined && d.state !== 'ok')
  const guard = troubled.length > 0 ? ` · guard: ${troubled.map((d) => `${d.address} ${d.state}`).join(', ')}` : ''
  const lines = [clip(`${label} · ${phaseText(s)} · ${figures.join(' · ')}${guard}`, width)]
  if (s.phase === 'switch') return lines
  const paused = s.rateFactor === 0
  if (s.phase === 'catch-up' && s.catchUp !== undefined) {
    const c = s.catchUp
    const extra = [etaText(c.etaSeconds, false), rateText(c.keysPerSecond), `re-copied ${formatCount(c.caughtUp)}`, `invalidated ${formatCount(c.invalidated)}`]
    return [...lines, ...barRows(width, [{ name: '  catch-up', done: c.checked, total: c.total, extra }])]
  }
  if (s.total === 0 && s.destinations.length === 0) return lines
  const clipName = (n: string): string => ([...n].length > 24 ? [...n].slice(0, 23).join('') + '…' : n)
  const bars: BarRow[] = [{ name: '  all', done: s.done, total: s.total, extra: [etaText(s.etaSeconds, paused), rateText(s.keysPerSecond)] }]
  const room = Math.max(0, rows - lines.length - 1)
  const shown = s.destinations.length <= room ? s.destinations : s.destinations.slice(0, Math.max(0, room - 1))
  for (const d of shown) {
    const extra = [d.failed > 0 ? `failed ${formatCount(d.failed)}` : '', formatBytes(d.bytes)]
    bars.push({ name: clipName(`  → ${d.address}`), done: d.done, total: d.total, extra })
  }
  const rest = s.destinations.slice(shown.length)
  if (rest.length > 0) {
    bars.push({ name: `  +${rest.length} more`, done: rest.reduce((n, d) => n + d.done, 0), total: rest.reduce((n, d) => n + d.total, 0), extra: [] })
  }
  return [...lines, ...barRows(width, bars)]
}

/** A plain progress line (no terminal): the same figures as the bars, in one line. */
export function progressSentence(s: JobSnapshot): string {
  const paused = s.rateFactor === 0
  if (s.phase === 'catch-up' && s.catchUp !== undefined) {
    const c = s.catchUp
    const parts = [`${formatCount(c.checked)}/${formatCount(c.total)} checked (${percent(c.checked, c.total).trim()})`, rateText(c.keysPerSecond), etaText(c.etaSeconds, false)].filter((x) => x !== '')
    return `${phaseText(s)}: ${parts.join(', ')}; re-copied ${formatCount(c.caughtUp)}, invalidated ${formatCount(c.invalidated)}`
  }
  const parts = [`${formatCount(s.done)}/${formatCount(s.total)} keys (${percent(s.done, s.total).trim()})`, rateText(s.keysPerSecond), etaText(s.etaSeconds, paused)].filter((x) => x !== '')
  const figures = [`moved ${formatCount(s.moved)}`, `in place ${formatCount(s.inPlace)}`, `failed ${formatCount(s.failed)}`]
  if (s.skipped > 0) figures.push(`skipped ${formatCount(s.skipped)}`)
  const guard = s.rateFactor < 1 ? `; guard: rate x${s.rateFactor}` : ''
  return `${phaseText(s)}: ${parts.join(', ')}; ${figures.join(', ')}${guard}`
}

/** A line for an event worth telling as it happens (undefined: nothing to say). */
export function describe(e: JobEvent): string | undefined {
  switch (e.type) {
    case 'dumped':
      return `${e.source} pass ${e.pass}: the dump listed ${formatCount(e.entries)} items, ${formatCount(e.toMove)} to move (${formatBytes(e.bytes)})`
    case 'guard': {
      const g = e.health
      return `guard: ${g.address} is ${g.state} (free ${formatBytes(g.freeBytes)}, evictions +${formatCount(g.evictions)})`
    }
    case 'pass-done':
      return `${e.source} pass ${e.pass} done: ${formatCount(e.moved)} moved, ${formatCount(e.inPlace)} in place, ${formatCount(e.failed)} failed`
    case 'marked':
      return `${e.server} marked ${e.state}${e.resumed && e.state === 'deactivating' ? ' (resuming)' : ''}`
    case 'grace':
      return `waiting ${formatDuration(e.seconds)} for pool-aware clients to read the new pool before moving keys`
    case 'switch':
      return e.phase === 'waiting' ? 'waiting for applications to switch to the new servers' : 'switch confirmed'
    case 'catch-up':
      if (e.phase === 'progress') return undefined
      return e.phase === 'start'
        ? `catch-up: checking ${formatCount(e.total)} copies against the source`
        : `catch-up done: ${formatCount(e.checked)}/${formatCount(e.total)} checked, ${formatCount(e.caughtUp)} re-copied, ${formatCount(e.invalidated)} invalidated`
    case 'delta':
      return e.phase === 'start'
        ? 'checking the copies against the sources before the switch'
        : `copies checked before the switch: ${formatCount(e.checked)} checked, ${formatCount(e.caughtUp)} re-copied, ${formatCount(e.invalidated)} invalidated`
    case 'follow':
      return e.state === 'on' ? undefined : e.message
    case 'journal-lost':
      return e.message
    case 'record-unsaved':
      return e.message
    case 'cleanup':
      return e.phase === 'start' ? 'deleting the copies left on servers that no longer own them' : `stale copies deleted: ${formatCount(e.deleted)}`
    case 'peer':
      return `peer ${e.index + 1}/${e.of}: copying from ${e.peer}`
    case 'peer-unreachable':
      return `peer ${e.peer} skipped: ${e.message}`
    case 'rebalance': {
      const change = [...e.added.map((a) => `+${a}`), ...e.removed.map((a) => `-${a}`)].join(' ')
      return `rebalance ${e.phase}${change !== '' ? ` (${change})` : ''}`
    }
    case 'purged':
      return `purged ${e.server} (flush_all on that server only)`
    case 'source-restarted':
      return e.message
    case 'plan':
      return describeScope(e.plan.scope, e.plan.fraction)
    // Drawn as figures, or said by the commands themselves (mirror: as warnings).
    case 'phase':
    case 'progress':
    case 'transition':
    case 'mirror-pass':
    case 'mirror-evictions':
    case 'mirror-passive-down':
    case 'mirror-passive-back':
    case 'mirror-follow':
      return undefined
  }
}

/** "2026-11-29T13:05:26Z": the time of a plain line. */
export function timestamp(d: Date): string {
  return d.toISOString().replace(/\.\d+Z$/, 'Z')
}

class PlainView implements ProgressView {
  private last = 0
  private lastPhase: JobPhase | undefined
  private stopped = false

  constructor(
    private readonly monitor: JobMonitor,
    private readonly label: string,
    private readonly stream: NodeJS.WriteStream,
    /** --json: progress lines and guard changes only. */
    private readonly quiet: boolean,
    private readonly intervalMs: number,
    private readonly now: () => Date,
  ) {}

  event(e: JobEvent): void {
    if (this.stopped) return
    if (e.type === 'progress' || e.type === 'catch-up') {
      const s = this.monitor.snapshot()
      const t = this.now().getTime()
      // A line every few seconds, and one as soon as the job enters a phase in which keys are counted.
      if (s.phase !== this.lastPhase || t - this.last >= this.intervalMs) {
        this.last = t
        this.lastPhase = s.phase
        this.write(progressSentence(s))
      }
      return
    }
    if (this.quiet && e.type !== 'guard') return
    const line = describe(e)
    if (line !== undefined) this.write(line)
  }

  log(line: string): void {
    this.write(line)
  }

  stop(): void {
    this.stopped = true
  }

  private write(line: string): void {
    this.stream.write(`${timestamp(this.now())} ${this.label}: ${line}\n`)
  }
}

class BarView implements ProgressView {
  private multi: cliProgress.MultiBar | undefined
  private readonly bars: cliProgress.SingleBar[] = []
  private stopped = false
  private lastDraw = 0

  constructor(
    private readonly monitor: JobMonitor,
    private readonly label: string,
    private readonly stream: NodeJS.WriteStream,
  ) {}

  event(e: JobEvent): void {
    if (this.stopped) return
    const line = describe(e)
    if (e.type === 'switch' && e.phase === 'waiting') {
      // The operator is asked to act (press Enter, or watch a switch command): no bar may cover it.
      this.teardown()
      if (line !== undefined) this.stream.write(`${line}\n`)
      return
    }
    if (line !== undefined) this.log(line)
    const now = Date.now()
    if (e.type === 'progress' && now - this.lastDraw < 100) return
    this.lastDraw = now
    this.draw()
  }

  log(line: string): void {
    const lines = wrap(line, this.stream.columns ?? 80)
    if (this.multi === undefined || this.stopped) {
      this.stream.write(lines.map((l) => `${l}\n`).join(''))
      return
    }
    // cli-progress clears only the first bar's row before writing log text: each further row of
    // it lands on a bar's row and must erase it (ESC[2K), or the bar's tail stays beside it.
    this.multi.log(lines.map((l) => `\x1b[2K${l}\n`).join(''))
    // Shown at the next redraw (within 100 ms); a line must not wait for the next event.
    this.multi.update()
  }

  stop(): void {
    if (this.stopped) return
    this.teardown()
    this.stopped = true
  }

  private draw(): void {
    const s = this.monitor.snapshot()
    if (s.phase === 'switch') return
    const width = this.stream.columns ?? 80
    const rows = Math.max(3, (this.stream.rows ?? 24) - 2)
    const lines = progressLines(s, this.label, width, rows)
    if (this.multi === undefined) {
      this.multi = new cliProgress.MultiBar({
        stream: this.stream,
        // Nothing of the bars stays on screen once they stop, whatever stops them.
        clearOnComplete: true,
        stopOnComplete: true,
        hideCursor: true,
        linewrap: false,
        // Log lines printed above the bars move them down a line: every bar must be written
        // again then, not only those whose text changed (cli-progress skips unchanged ones).
        forceRedraw: true,
        fps: 5,
        format: (_options, _params, payload: { line?: string }) => payload.line ?? '',
      })
    }
    while (this.bars.length < lines.length) this.bars.push(this.multi.create(1, 0, { line: '' }))
    while (this.bars.length > lines.length) this.multi.remove(this.bars.pop()!)
    lines.forEach((line, i) => this.bars[i]!.update(0, { line }))
  }

  /** Flushes pending log lines, then clears the bars from the screen. */
  private teardown(): void {
    const multi = this.multi
    if (multi === undefined) return
    this.multi = undefined
    this.bars.length = 0
    multi.update()
    multi.stop()
  }
}
