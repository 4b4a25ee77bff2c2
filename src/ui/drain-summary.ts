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
  const skipped = Object.entries(r.skipped).filter(([, v]) => v > 0)
  lines.push(
    `transitioned ${formatPercent(r.ratio)} of ${formatCount(r.keysAtStart)} keys (threshold ${formatPercent(r.threshold)}): ` +
      `${formatCount(r.moved)} moved, ${formatCount(r.inPlace)} already in place` +
      (r.movedByClients > 0 ? `, ${formatCount(r.movedByClients)} moved by clients` : '') +
      `, ${formatCount(r.conflicts)} conflicts, ${formatCount(r.failed)} failed` +
      (skipped.length > 0 ? `, skipped ${skipped.map(([k, v]) => `${formatCount(v)} ${k}`).join(', ')}` : ''),
  )
  if (r.sources.length > 1) lines.push(`sources: ${r.sources.map((s) => `${s.address} ${formatCount(s.moved + s.inPlace)}/${formatCount(s.keysAtStart)}`).join(', ')} (modulo placement: the owner of keys on the servers that stay changed too)`)
  for (const s of r.sources) if (s.restarted) lines.push(paint.warn(`${s.address} restarted during the drain and came back empty: the keys not moved by then are counted as gone`))
  if (r.staleCopiesDeleted > 0) lines.push(`${formatCount(r.staleCopiesDeleted)} stale copies deleted from the servers that stay`)
  if (r.handoff === 'copy' && (r.caughtUp > 0 || r.invalidated > 0)) {
    lines.push(`catch-up after the switch: ${formatCount(r.caughtUp)} re-copied, ${formatCount(r.invalidated)} invalidated`)
  }
  lines.push(`${formatBytes(r.bytes)} in ${formatDuration(r.durationSeconds)} (${formatCount(r.keysPerSecond)} keys/s), ${r.passes} pass(es)`)
  lines.push(renderDestinations(r.destinations))
  for (const s of r.samples.slice(0, 5)) lines.push(paint.dim(`  ${s.key}: ${s.reason}`))
  return lines.join('\n')
}

/** The per-destination figures of a finished job (drain, rebalance). */
export function renderDestinations(destinations: readonly DestinationTally[]): string {
  return renderTable(
    ['DESTINATION', 'KEYS', 'BYTES', 'IN PLACE', 'FAILED'],
    destinations.map((d) => [d.address, formatCount(d.keys), formatBytes(d.bytes), formatCount(d.inPlace), d.failed > 0 ? paint.bad(formatCount(d.failed)) : '0']),
    new Set([1, 2, 3, 4]),
  )
}
