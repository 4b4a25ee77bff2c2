/**
 * Rebalance benchmark: for each strategy, start 4 memcached servers, write a pool file with the
 * first 3 (pool-aware clients), load N items at their owners under that pool, then run
 * `rebalance --add <4th>` in process, unthrottled (--rate 0 --bandwidth 0, move hand-off):
 *
 *   npm run bench:rebalance -- --keys 200000 --value-size 100 [--hashes php-memcached-libketama,memjs,php-memcached-default]
 *
 * Prints per strategy: the fraction of keys that changed owner (from the dumps, and estimated
 * from placement alone), keys moved, wall time and moved keys/s. Verified: a sample of keys sits
 * at its owner under the new pool only. Every server started here is killed by PID at the end.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { startMemcached, type MemcachedServer } from '../test/helpers/memcached.js'
import { HD, MetaConnection, MetaPayload, parseAddress } from '../src/core/protocol/index.js'
import { FilePoolStore } from '../src/core/pool/store.js'
import { poolPlacement } from '../src/core/pool/placement.js'
import { runRebalance } from '../src/core/jobs/rebalance.js'
import type { Pool } from '../src/core/pool/model.js'
import { JOB_DEFAULTS } from '../src/core/defaults.js'

const { values: argv } = parseArgs({
  options: {
    keys: { type: 'string', default: '200000' },
    'value-size': { type: 'string', default: '100' },
    hashes: { type: 'string', default: 'php-memcached-libketama,memjs,php-memcached-default' },
    memory: { type: 'string', default: '512' },
  },
  strict: true,
})
const keys = Number(argv.keys)
const valueSize = Number(argv['value-size'])
const keyOf = (i: number): Buffer => Buffer.from(`bench:${i}`, 'latin1')

/** Loads keys 0..n-1 at their owners under `pool` (pipelined `ms … q`, 256 KiB batches per server). */
async function load(pool: Pool, n: number): Promise<void> {
  const pp = poolPlacement(pool)
  const conns = await Promise.all(pp.servers.map((s) => MetaConnection.connect(parseAddress(s.address))))
  const payloads = conns.map(() => new MetaPayload(512 * 1024))
  const value = Buffer.alloc(valueSize, 0x2e)
  const pending: Promise<void>[] = []
  try {
    for (let i = 0; i < n; i++) {
      const key = keyOf(i)
      const s = pp.placement.owner(key)
      payloads[s]!.command('ms', key).size(valueSize).flag('T', 0).flag('q').end(value)
      if (payloads[s]!.length >= 256 * 1024) {
        pending.push(conns[s]!.batch(payloads[s]!.noop().take(), () => undefined))
        if (pending.length >= 16) await Promise.all(pending.splice(0))
      }
    }
    conns.forEach((c, s) => {
      if (payloads[s]!.length > 0) pending.push(c.batch(payloads[s]!.noop().take(), () => undefined))
    })
    await Promise.all(pending)
  } finally {
    await Promise.all(conns.map((c) => c.close()))
  }
}

/** Sample keys must be at their owner under `pool` and on no other server. */
async function spotCheck(pool: Pool, n: number, count: number): Promise<string | undefined> {
  const pp = poolPlacement(pool)
  for (const s of pp.servers) {
    const c = await MetaConnection.connect(parseAddress(s.address))
    try {
      const p = new MetaPayload()
      const sample: Buffer[] = []
      for (let j = 0; j < count; j++) sample.push(keyOf(Math.floor((j * n) / count)))
      sample.forEach((k, j) => p.command('mg', k).flags('q').flag('O', j).end())
      const found = new Set<number>()
      await c.batch(p.noop().take(), (r) => {
        if (r.status === HD) found.add(r.opaque)
      })
      for (const [j, k] of sample.entries()) {
        const owner = pp.servers[pp.placement.owner(k)]!.address
        if ((owner === s.address) !== found.has(j)) return `${k.toString()} ${found.has(j) ? 'found on' : 'missing from'} ${s.address} (owner ${owner})`
      }
    } finally {
      await c.close()
    }
  }
  return undefined
}

async function benchOne(hash: string): Promise<string[]> {
  const servers: MemcachedServer[] = []
  const dir = mkdtempSync(path.join(tmpdir(), 'memdrain-bench-rebalance-'))
  try {
    for (let i = 0; i < 4; i++) servers.push(await startMemcached({ memoryMb: Number(argv.memory) }))
    const file = path.join(dir, 'memdrain.json')
    writeFileSync(file, JSON.stringify({ hash, clients: 'pool-aware', servers: servers.slice(0, 3).map((s) => ({ address: s.address })) }))
    const store = new FilePoolStore(file)
    await load((await store.load()).pool, keys)
    const started = performance.now()
    const r = await runRebalance({
      store,
      edits: { add: [servers[3]!.address], remove: [], weight: [] },
      handoff: 'move',
      threshold: JOB_DEFAULTS.threshold,
      purge: true,
      rate: 0,
      bandwidth: 0,
      minTtl: 2,
      minFree: 0.05,
      allowEvictions: false,
      order: 'hot-first',
      spoolDir: path.join(dir, 'spool'),
      dryRun: false,
      clientGraceSeconds: 0,
    })
    const secs = (performance.now() - started) / 1000
    const problem = r.status !== 0 ? `status ${r.status}` : await spotCheck((await store.load()).pool, keys, 2000)
    return [
      hash,
      String(r.plan.keysListed),
      String(r.moved),
      `${(r.plan.fraction * 100).toFixed(1)}%`,
      r.plan.estimatedFraction === undefined ? "-" : `${(r.plan.estimatedFraction * 100).toFixed(1)}%`,
      secs.toFixed(2),
      String(Math.round(r.moved / secs)),
      problem ?? 'ok',
    ]
  } finally {
    await Promise.all(servers.map((s) => s.kill()))
    rmSync(dir, { recursive: true, force: true })
  }
}

const rows = [['STRATEGY', 'KEYS', 'MOVED', 'FRACTION', 'ESTIMATE', 'SECONDS', 'MOVED KEYS/S', 'VERIFIED']]
for (const hash of argv.hashes.split(',')) rows.push(await benchOne(hash))
const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)))
for (const r of rows) console.log(r.map((c, i) => c.padEnd(widths[i]!)).join('  '))
process.exit(0)
