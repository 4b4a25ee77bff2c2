import type { DrainResult } from '../core/jobs/drain.js'
import type { DestinationTally } from '../core/engine/tally.js'
import { formatBytes, formatCount, formatDuration, formatPercent } from './format.js'
import { paint, renderTable } from './style.js'
import { renderPlan } from './plan-summary.js'

export function renderDrainSummary(r: DrainResult, rate: number): string {
  const lines: string[] = []
  if (r.dryRun) {
    lines.push(paint.bold(`Plan: drain ${r.server} (${r.handoff} hand-off)`))
    lines.push(...renderPlan(r.plan, rate))
    return lines.join('\n')
  }
  const verdict = r.interrupted
    ? paint.warn('interrupted — state saved; run the same command to resume')
    : r.state === 'removed'
      ? paint.ok(`done — ${r.server} ${r.purged ? 'purged and ' : ''}marked removed`)
      : paint.warn(`partial — ${r.server} stays deactivating; run again to resume`)
  lines.push(`${paint.bold(`drain ${r.server}`)} (${r.handoff} hand-off): ${verdict}`)
  lines.push(`transitioned ${formatPercent(r.ratio)} (threshold ${formatPercent(r.threshold)}), since the drain started${r.resumed ? ' (resumed)' : ''}:`)
  lines.push(`  ${renderAccount(r)}`)
  if (r.conflicts > 0) lines.push(`  ${formatCount(r.conflicts)} conflicts (a newer value was already at the destination: kept)`)
  if (r.sources.length > 1) lines.push(`sources: ${r.sources.map((s) => `${s.address} ${formatCount(s.moved + s.inPlace)}/${formatCount(s.keysAtStart)}`).join(', ')} (modulo placement: the owner of keys on the servers that stay changed too)`)
  for (const s of r.sources) if (s.restarted) lines.push(paint.warn(`${s.address} restarted during the drain and came back empty: the keys not moved by then are counted as gone`))
  if (r.staleCopiesDeleted > 0) lines.push(`${formatCount(r.staleCopiesDeleted)} stale copies deleted from the servers that stay`)
  if (r.handoff === 'copy' && (r.caughtUp > 0 || r.invalidated > 0)) {
    lines.push(`catch-up after the switch: ${formatCount(r.caughtUp)} re-copied, ${formatCount(r.invalidated)} invalidated`)
  }
  lines.push(renderThisRun(r))
  lines.push(renderDestinations(r.destinations))
  for (const s of r.samples.slice(0, 5)) lines.push(paint.dim(`  ${s.key}: ${s.reason}`))
  return lines.join('\n')
}

/** Cumulative counts of a drain, or of a rebalance's sources. */
export interface AccountCounts {
  keysAtStart: number
  moved: number
  inPlace: number
  movedByClients?: number
  skipped: Record<string, number>
  failed: number
}

/**
 * Where every key at the start went, as a sum that adds up: moved + in place + moved by clients +
 * gone + skipped + not moved = keys at start. "Gone" are keys that left the source on their own
 * (expired, deleted, evicted) less those the pool-aware clients moved; "not moved" is what is
 * left: failed, or not reached yet. Keys written to the source during the drain and moved too
 * make the sum exceed the keys at start: they are counted as such.
 */
export function renderAccount(c: AccountCounts): string {
  const gone = c.skipped.gone ?? 0
  const byClients = Math.min(c.movedByClients ?? 0, gone)
  const skipped = Object.entries(c.skipped).filter(([k, v]) => k !== 'gone' && v > 0)
  const parts: [string, number][] = [
    ['moved', c.moved],
    ['already in place', c.inPlace],
    ...(byClients > 0 ? ([['moved by clients', byClients]] as [string, number][]) : []),
    ['gone (expired or deleted)', gone - byClients],
    ...skipped.map(([k, v]) => [`skipped ${k}`, v] as [string, number]),
  ]
  const accounted = parts.reduce((n, [, v]) => n + v, 0)
  const notMoved = Math.max(0, c.keysAtStart - accounted)
  const written = Math.max(0, accounted - c.keysAtStart)
  parts.push([c.failed > 0 ? `not moved (${formatCount(c.failed)} failed this run)` : 'not moved', notMoved])
  const total = written > 0 ? `${formatCount(c.keysAtStart)} keys at start + ${formatCount(written)} written since` : `${formatCount(c.keysAtStart)} keys at start`
  return `${total} = ${parts.map(([label, v]) => `${formatCount(v)} ${label}`).join(' + ')}`
}

/**
 * This run's figures, labelled as such (a resumed job's counts above are cumulative): value bytes
 * written, duration and rate of the key moves (the wait for the applications' switch excluded).
 */
export function renderThisRun(r: { bytes: number; durationSeconds: number; keysPerSecond: number; passes?: number }): string {
  return (
    `this run: ${formatBytes(r.bytes)} of values written in ${formatDuration(r.durationSeconds)} of moving (${formatCount(r.keysPerSecond)} keys/s, the wait for the switch excluded)` +
    (r.passes !== undefined ? `, ${r.passes} pass(es)` : '')
  )
}

/** The per-destination figures of this run of a job (drain, rebalance). */
export function renderDestinations(destinations: readonly DestinationTally[]): string {
  return renderTable(
    ['DESTINATION', 'KEYS', 'VALUE BYTES', 'IN PLACE', 'FAILED'],
    destinations.map((d) => [d.address, formatCount(d.keys), formatBytes(d.bytes), formatCount(d.inPlace), d.failed > 0 ? paint.bad(formatCount(d.failed)) : '0']),
    new Set([1, 2, 3, 4]),
  )
}
