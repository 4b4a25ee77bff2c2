import type { MirrorPass, MirrorResult } from '../core/jobs/mirror.js'
import type { WarmResult } from '../core/jobs/warm.js'
import { formatBytes, formatCount, formatDuration, formatPercent } from './format.js'
import { paint } from './style.js'

export function renderWarmSummary(r: WarmResult): string {
  const verdict = r.interrupted
    ? paint.warn('interrupted — run the same command again (keys already there count as in place)')
    : r.status === 0
      ? paint.ok('done')
      : paint.warn('partial — run again to retry what failed')
  const lines = [`${paint.bold(`warm ${r.server}`)}${r.from !== undefined ? ` (keys of ${r.from})` : ''}: ${verdict}`]
  const skipped = Object.entries(r.skipped)
  lines.push(
    `restored ${formatPercent(r.ratio)} of ${formatCount(r.found)} keys found on peers (threshold ${formatPercent(r.threshold)}): ` +
      `${formatCount(r.restored)} restored, ${formatCount(r.inPlace)} already there, ${formatCount(r.failed)} failed` +
      (skipped.length > 0 ? `, skipped ${skipped.map(([k, v]) => `${formatCount(v)} ${k}`).join(', ')}` : ''),
  )
  lines.push(`${formatBytes(r.bytes)} in ${formatDuration(r.durationSeconds)} (${formatCount(r.keysPerSecond)} keys/s) from ${r.peers.length} peer(s)`)
  if (r.unreachablePeers.length > 0) lines.push(paint.bad(`unreachable peers (their keys were not restored): ${r.unreachablePeers.join(', ')}`))
  for (const s of r.samples.slice(0, 5)) lines.push(paint.dim(`  ${s.key}: ${s.reason}`))
  return lines.join('\n')
}

export function renderMirrorPass(p: MirrorPass): string {
  return (
    `pass ${p.pass}: ${formatCount(p.listed)} keys on the active, ${formatCount(p.copied)} copied, ${formatCount(p.deleted)} deleted` +
    (p.failed > 0 ? `, ${paint.bad(`${formatCount(p.failed)} failed`)}` : '') +
    `, lag ${(p.lagMs / 1000).toFixed(1)} s; passive ${formatBytes(p.passive.usedBytes)} of ${formatBytes(p.passive.limitBytes)}` +
    (p.passive.evictions > 0 ? paint.warn(`, ${formatCount(p.passive.evictions)} evictions`) : '')
  )
}

/** A line from a mirror that is alive: the pass, how long nothing changed, the lag, the passive's memory. */
export function renderMirrorHeartbeat(p: MirrorPass, idleMs: number): string {
  const idle = p.copied + p.deleted + p.failed === 0 ? `no change for ${formatDuration(idleMs / 1000)}` : `${formatCount(p.copied)} copied, ${formatCount(p.deleted)} deleted`
  return `mirror alive: pass ${formatCount(p.pass)}, ${formatCount(p.listed)} keys on the active, ${idle}, lag ${(p.lagMs / 1000).toFixed(1)} s, passive ${formatBytes(p.passive.usedBytes)} of ${formatBytes(p.passive.limitBytes)}`
}

export function renderMirrorSummary(r: MirrorResult): string {
  const lines = [`${paint.bold(`mirror ${r.active} → ${r.passive}`)}: ${r.passes} pass(es), ${formatCount(r.copied)} copied, ${formatCount(r.deleted)} deleted, ${formatCount(r.failed)} failed`]
  if (r.last !== undefined) lines.push(renderMirrorPass(r.last))
  if (r.passes > 1) lines.push(`lag: median ${(r.lag.medianMs / 1000).toFixed(1)} s, max ${(r.lag.maxMs / 1000).toFixed(1)} s`)
  lines.push(paint.dim(`key → CAS map: ${formatCount(r.keys)} keys in ${formatBytes(r.mapBytes)}`))
  return lines.join('\n')
}
