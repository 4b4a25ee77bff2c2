import type { ChangePlan, ChangeScope } from '../core/handoff/index.js'
import type { ChangeInProgress } from '../core/pool/change-status.js'
import { formatBytes, formatCount, formatDuration, formatPercent } from './format.js'
import { paint, renderTable } from './style.js'

/**
 * The scope of a pool change in one sentence: which servers hand over keys, and why (the
 * placement). For a modulo placement, removing one server changes the owner of most keys on the
 * servers that stay, and an operator has to know that before a drain starts.
 */
export function describeScope(s: ChangeScope, fraction: number): string {
  const what = s.leaving.length > 0 ? `removing ${s.leaving.join(', ')} from` : 'this change of'
  const staying = s.sources.length - s.leaving.length
  if (s.kind === 'modulo') {
    return (
      `${what} a modulo pool (${s.hash}) changes the owner of ${formatPercent(fraction)} of all keys: ` +
      (s.leaving.length > 0 ? `${formatCount(s.keysOnLeaving)} on ${s.leaving.join(', ')} and ` : '') +
      `${formatCount(s.keysOnStaying)} on the ${staying} server(s) that stay`
    )
  }
  if (staying === 0) return `${what} a consistent pool (${s.hash}) changes the owner of ${s.leaving.join(', ')}'s keys only (${formatCount(s.keysOnLeaving)}); no other server is read`
  return `${what} a consistent pool (${s.hash}) changes the owner of ${formatCount(s.keysOnLeaving + s.keysOnStaying)} keys (${formatPercent(fraction)} of those listed); ${s.sources.length} server(s) are read`
}

/** A plan as tables: who sends what to whom, each destination's room, and how long it takes. */
export function renderPlan(p: ChangePlan, rate: number): string[] {
  const lines: string[] = []
  lines.push(describeScope(p.scope, p.fraction))
  lines.push(
    `${formatCount(p.keysToMove)} of ${formatCount(p.keysListed)} keys listed change owner (${formatPercent(p.fraction)}${p.estimatedFraction !== undefined ? `; placement alone estimates ${formatPercent(p.estimatedFraction)}` : ''}), ${formatBytes(p.bytesToMove)} of items (item bytes: key, value and memcached's header, as the dumps list them)`,
  )
  if (p.pairs.length > 0) {
    lines.push(
      renderTable(
        ['FROM', 'TO', 'KEYS', 'ITEM BYTES'],
        p.pairs.map((x) => [x.from, x.to, formatCount(x.keys), formatBytes(x.bytes)]),
        new Set([2, 3]),
      ),
    )
  }
  lines.push(
    renderTable(
      ['DESTINATION', 'KEYS', 'ITEM BYTES', 'FREE', 'ITEM MAX', 'LARGEST', 'FITS'],
      p.destinations.map((d) => [
        d.address,
        formatCount(d.keys),
        formatBytes(d.bytes),
        formatBytes(d.freeBytes),
        formatBytes(d.itemSizeMax),
        formatBytes(d.largestItem ?? 0),
        d.fits && d.itemsFit ? paint.ok('yes') : paint.bad(d.fits ? 'items too large (skipped)' : 'no room'),
      ]),
      new Set([1, 2, 3, 4, 5]),
    ),
  )
  const tooLarge = p.destinations.filter((d) => !d.itemsFit)
  if (tooLarge.length > 0) {
    // Said before the job: such items count as not handed over, and once the rest reaches the
    // threshold the purge drops them with the server.
    lines.push(
      paint.bad(
        `Warning: items up to ${formatBytes(Math.max(...tooLarge.map((d) => d.largestItem ?? 0)))} exceed the item_size_max of ${tooLarge.map((d) => `${d.address} (${formatBytes(d.itemSizeMax)})`).join(', ')}: ` +
          'they cannot be handed over, count against --threshold (skipped.too-large), and are lost when the source is purged. Raise -I on the destinations, or pass --threshold 1 to keep the source until they are dealt with.',
      ),
    )
  }
  lines.push(
    p.estimatedSeconds !== null
      ? `Estimated duration at ${formatCount(rate)} keys/s: ${formatDuration(p.estimatedSeconds)}`
      : "Unthrottled (--rate 0): limited by memcached's CPU, ~150k keys/s on 2 cores",
  )
  return lines
}

/** One line for `status` and `pool show`: the change in progress, where it stands, how to resume or go back. */
export function describeChangeInProgress(c: ChangeInProgress): string {
  const servers = [...c.leaving.map((a) => `-${a}`), ...c.added.map((a) => `+${a}`)].join(' ')
  return (
    `${c.kind} in progress (${servers}; ${c.handoff} hand-off, phase ${c.phase}${c.startedAt !== '' ? `, since ${c.startedAt}` : ''}): ` +
    `${c.sources.length} source(s), ${formatCount(c.transitioned)} of ${formatCount(c.keysAtStart)} keys handed over (${formatPercent(c.ratio)}). ` +
    `Resume: \`${c.resume}\`${c.abort !== undefined ? `; go back: \`${c.abort}\`` : ''}`
  )
}
