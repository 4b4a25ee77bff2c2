/**
 * How long each placement strategy takes to build a pool at its weight limits
 * (src/core/placement/weight-limits.ts) and at 10× them: one server at the limit, two at a
 * quarter, then 1,000 owner lookups. Numbers move with the machine's load: rerun on a quiet one.
 *
 *   node --import tsx scripts/weight-limits.ts
 */
import { HASH_INFO, HASH_NAMES, placementFor } from '../src/core/placement/registry.js'
import { weightLimit } from '../src/core/placement/weight-limits.js'

for (const hash of HASH_NAMES) {
  if (!HASH_INFO[hash].weights) continue
  const limit = weightLimit(hash)
  const row: string[] = [hash.padEnd(32)]
  for (const scale of [1, 10]) {
    const top = limit.total === undefined ? limit.perServer : Math.floor(limit.total / 2) * scale
    const rest = limit.total === undefined ? limit.perServer : Math.floor(limit.total / 4) * scale
    if (scale > 1 && limit.total === undefined) continue
    const servers = [top, rest, rest].map((weight, i) => ({ address: `10.0.0.${i + 1}:11211`, host: `10.0.0.${i + 1}`, port: 11211, weight, name: `s${i}` }))
    const started = performance.now()
    const p = placementFor(hash, servers)
    for (let i = 0; i < 1000; i++) p.owner(Buffer.from(`key:${i}`))
    row.push(`Σw ${(top + 2 * rest).toLocaleString('en-US')}: ${(performance.now() - started).toFixed(1)} ms`)
  }
  console.log(row.join('  '))
}
