/**
 * Placement speed: keys/s of `owner()` per strategy, over a fixed set of realistic keys (ASCII
 * `user:…`/`session:…` keys of 10–40 bytes, 10 % UTF-8), on a 5-server pool (25 servers with
 * --servers 25). Each strategy runs in its own Node process, as in a real drain (one strategy
 * per process: measuring them one after another in one process would make the shared call sites
 * megamorphic and understate the later ones). Warmed up, then timed for --ms milliseconds; the
 * best of --repeat runs is reported (other processes on the machine only slow a run down).
 *
 *   node --import tsx scripts/bench-placement.ts [--servers 5] [--ms 300] [--repeat 3] [--only mcrouter] [--json]
 */

import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

import { fractionalWeights, HASH_INFO, HASH_NAMES, placementFor, type HashName, type PlacementServer } from '../src/core/placement/index.js'

const { values: argv } = parseArgs({
  options: {
    servers: { type: 'string', default: '5' },
    ms: { type: 'string', default: '300' },
    repeat: { type: 'string', default: '3' },
    only: { type: 'string' },
    json: { type: 'boolean', default: false },
    child: { type: 'string' },
  },
})

const SERVERS = Number(argv.servers)
const MS = Number(argv.ms)
const REPEAT = Number(argv.repeat)
const KEY_COUNT = 4096

const encoder = new TextEncoder()
const keys: Uint8Array[] = Array.from({ length: KEY_COUNT }, (_, i) => {
  const base = i % 3 === 0 ? `user:${i * 7919}` : i % 3 === 1 ? `session:${(i * 2654435761) >>> 0}:profile` : `cache/v2/page/${i}/fragment-${i % 97}`
  return encoder.encode(i % 10 === 0 ? `${base}:ключ` : base)
})

function pool(hash: HashName): PlacementServer[] {
  return Array.from({ length: SERVERS }, (_, i) => {
    const host = `10.0.${i >> 8}.${(i & 255) + 1}`
    return {
      address: `${host}:11211`,
      host,
      port: 11211,
      weight: fractionalWeights(hash) ? [1, 0.5, 0.75, 0.25, 0.9][i % 5]! : 1,
      name: `cache-${i}`,
      hostname: `cache-${i}.internal`,
    }
  })
}

function measure(hash: HashName): number {
  const p = placementFor(hash, pool(hash))
  let sink = 0
  for (let i = 0; i < 20_000; i++) sink += p.owner(keys[i & (KEY_COUNT - 1)]!)
  let best = 0
  for (let r = 0; r < REPEAT; r++) {
    let n = 0
    const start = process.hrtime.bigint()
    const stop = start + BigInt(MS) * 1_000_000n
    let now = start
    while (now < stop) {
      for (let i = 0; i < 4096; i++) sink += p.owner(keys[(n + i) & (KEY_COUNT - 1)]!)
      n += 4096
      now = process.hrtime.bigint()
    }
    best = Math.max(best, n / (Number(now - start) / 1e9))
  }
  if (sink < 0) console.log(sink)
  return best
}

if (argv.child !== undefined) {
  console.log(Math.round(measure(argv.child as HashName)))
  process.exit(0)
}

const rows = HASH_NAMES.filter((h) => argv.only === undefined || h.includes(argv.only)).map((hash) => {
  const child = spawnSync(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), '--child', hash, '--servers', String(SERVERS), '--ms', String(MS), '--repeat', String(REPEAT)], { encoding: 'utf8' })
  if (child.status !== 0) throw new Error(`${hash}: ${child.stderr}`)
  return { hash, kind: HASH_INFO[hash].kind, keysPerSecond: Number(child.stdout.trim()) }
})
if (argv.json) {
  console.log(JSON.stringify({ servers: SERVERS, rows }, null, 2))
} else {
  console.log(`owner() keys/s, ${SERVERS} servers, best of ${REPEAT} × ${MS} ms (other load on the machine lowers these)`)
  for (const r of rows) console.log(`${r.hash.padEnd(40)} ${r.kind.padEnd(10)} ${(r.keysPerSecond / 1e6).toFixed(2).padStart(6)} M`)
}
