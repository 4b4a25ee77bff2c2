import type { AbortResult, RebalanceResult } from '../core/jobs/rebalance.js'
import { renderDestinations } from './drain-summary.js'
import { formatBytes, formatCount, formatDuration, formatPercent } from './format.js'
import { paint, renderTable } from './style.js'
import { renderPlan } from './plan-summary.js'

export function renderRebalanceSummary(r: RebalanceResult, rate: number): string {
  const lines: string[] = []
  const change = [
    r.added.length > 0 ? `+${r.added.join(', +')}` : '',
    r.removed.length > 0 ? `-${r.removed.join(', -')}` : '',
    r.reweighted.length > 0 ? `reweighted ${r.reweighted.join(', ')}` : '',
  ]
    .filter((x) => x !== '')
    .join('; ')
  if (r.dryRun) {
    lines.push(paint.bold(`Plan: rebalance ${r.previousServers.length} → ${r.servers.length} servers (${r.hash}, ${r.handoff} hand-off)${change !== '' ? `: ${change}` : ''}`))
    lines.push(...renderPlan(r.plan, rate))
    return lines.join('\n')
  }
  const verdict = r.interrupted
    ? paint.warn('interrupted — state saved; run the same command to resume')
    : r.finished
      ? paint.ok('done — the pool file is the new pool')
      : paint.warn('partial — the rebalance record stays; run the same command to resume')
  lines.push(`${paint.bold('rebalance')} ${change} (${r.handoff} hand-off): ${verdict}`)
  const skipped = Object.entries(r.skipped).filter(([, v]) => v > 0)
  lines.push(
    `transitioned ${formatPercent(r.ratio)} (threshold ${formatPercent(r.threshold)}): ${formatCount(r.moved)} moved, ${formatCount(r.inPlace)} already in place, ` +
      `${formatCount(r.conflicts)} conflicts, ${formatCount(r.failed)} failed` +
      (skipped.length > 0 ? `, skipped ${skipped.map(([k, v]) => `${formatCount(v)} ${k}`).join(', ')}` : ''),
  )
  if (r.handoff === 'copy' && r.switched) {
    lines.push(`after the switch: ${formatCount(r.caughtUp)} re-copied, ${formatCount(r.invalidated)} invalidated, ${formatCount(r.staleCopiesDeleted)} stale copies deleted from staying servers`)
  }
  lines.push(`${formatBytes(r.bytes)} in ${formatDuration(r.durationSeconds)} (${formatCount(r.keysPerSecond)} keys/s)`)
  lines.push(
    renderTable(
      ['SOURCE', 'KEYS', 'MOVED', 'IN PLACE', 'FAILED', 'RATIO', 'STATE'],
      r.sources.map((s) => [
        s.address,
        formatCount(s.keysAtStart),
        formatCount(s.moved),
        formatCount(s.inPlace),
        s.failed > 0 ? paint.bad(formatCount(s.failed)) : '0',
        formatPercent(s.ratio),
        s.leaving ? (s.purged ? 'purged, removed' : r.finished ? 'removed' : 'deactivating') : 'active',
      ]),
      new Set([1, 2, 3, 4, 5]),
    ),
  )
  lines.push(renderDestinations(r.destinations))
  for (const s of r.samples.slice(0, 5)) lines.push(paint.dim(`  ${s.key}: ${s.reason}`))
  return lines.join('\n')
}

export function renderAbortSummary(a: AbortResult): string {
  return a.restored
    ? `${paint.ok('rebalance aborted')}: the previous pool (${a.servers.join(', ')}) is restored; ${formatCount(a.copiesDeleted)} copies deleted, ${formatCount(a.copiesKept)} kept (written by applications since)`
    : paint.warn(`abort incomplete: ${formatCount(a.copiesDeleted)} copies deleted, ${formatCount(a.failed)} could not be; the rebalance record stays — run --abort again`)
}
