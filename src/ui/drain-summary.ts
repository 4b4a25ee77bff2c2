import type { DrainResult } from '../core/jobs/drain.js'
import type { DestinationTally } from '../core/engine/tally.js'
import { formatBytes, formatCount, formatDuration, formatPercent } from './format.js'
import { paint, renderTable } from './style.js'

export function renderDrainSummary(r: DrainResult, rate: number): string {
  const lines: string[] = []
  if (r.dryRun) {
    lines.push(paint.bold(`Plan: drain ${r.server} (${r.handoff} hand-off)`))
    lines.push(`${formatCount(r.keysAtStart)} live keys, ${formatBytes(r.bytesAtStart)} to move`)
    lines.push(
      renderTable(
        ['DESTINATION', 'KEYS', 'BYTES', 'FREE', 'ITEM MAX', 'FITS'],
        r.preflight.map((d) => [d.address, formatCount(d.keys), formatBytes(d.bytes), formatBytes(d.freeBytes), formatBytes(d.itemSizeMax), d.fits ? paint.ok('yes') : paint.bad('no')]),
        new Set([1, 2, 3, 4]),
      ),
    )
    lines.push(rate > 0 ? `Estimated duration at ${formatCount(rate)} keys/s: ${formatDuration(r.keysAtStart / rate)}` : 'Unthrottled (--rate 0): limited by memcached\'s CPU, ~150k keys/s on 2 cores')
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
  if (r.sourceRestarted) lines.push(paint.warn(`${r.server} restarted during the drain and came back empty: the keys not moved by then are counted as gone`))
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
