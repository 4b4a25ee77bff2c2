/**
 * Rebalance and warm against references, in one run (fresh memcached -t 1 servers for each
 * measurement, php-memcached-libketama, values of `--value-size` bytes; the jobs run in this
 * process from dist/, unthrottled, move hand-off, no grace):
 *
 * 1. rebalance 4 → 5 servers, N keys at their owners under the 4 (the same 5 servers, restarted
 *    empty and loaded alike for each run: the same keys move): memdrain `runRebalance` against the raw mover (scripts/raw-mover.ts) run on every old server at once, each moving
 *    the keys whose owner under the 5 is another server — the raw mover's rate on the keys that
 *    move plus its dump rate on the keys only read. Ratio = raw seconds / memdrain seconds.
 * 2. warm vs drain: 4 servers, replicas 2, N keys on both members of their chain; one server
 *    restarted empty and warmed (`runWarm`, its 3 peers at once) once the peers' hash tables are
 *    steady (`--fresh-peers`: at once, while they may still grow), keys restored per second;
 *    against a drain (`runDrain`) of one server of 4 (replicas 1) holding as many keys as the
 *    warm restores. Ratio = warm keys/s / drain keys/s.
 *
 *   npm run build && node --import tsx scripts/bench-ratios.ts [--keys 1000000] [--value-size 100] [--repeat 3] [--fresh-peers]
 *
 * Verified after each run: every key at its owner(s) under the final pool with its value. Every
 * server started here is killed by PID at the end.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { startMemcached, type MemcachedServer } from '../test/helpers/memcached.js'
import { MetaConnection, MetaPayload, parseAddress, VA } from '../src/core/protocol/index.js'
import { validatePool } from '../src/core/pool/validate.js'
import { poolPlacement } from '../src/core/pool/placement.js'
import type { Pool } from '../src/core/pool/model.js'
import { hashTableBusy } from '../src/core/engine/engine.js'
import { rawMove } from './raw-mover.js'

const { values: argv } = parseArgs({
  options: {
    keys: { type: 'string', default: '1000000' },
    'value-size': { type: 'string', default: '100' },
    memory: { type: 'string', default: '1024' },
    only: { type: 'string' },
    /** Without the reference runs (raw mover, drain): to profile memdrain's own run (node --cpu-prof). */
    'no-reference': { type: 'boolean', default: false },
    /** Logs the warm's phases per peer with their times (where a run's time goes). */
    events: { type: 'boolean', default: false },
    /** Runs each measurement (warm and its drain alternately) N times: the fastest of each side makes the ratio, every run is printed. */
    repeat: { type: 'string', default: '1' },
    /**
     * Warm right after loading the peers, while their hash tables may still be growing (the warm
     * then waits for the growth before its hash walks). Default: once the peers' tables are steady,
     * as on peers that have been serving for a while (the case a warm is for).
     */
    'fresh-peers': { type: 'boolean', default: false },
  },
  strict: true,
})
const N = Number(argv.keys)
const REPEAT = Number(argv.repeat)
if (!Number.isInteger(REPEAT) || REPEAT < 1) throw new Error(`--repeat must be a positive integer, not ${argv.repeat}`)
const VALUE = Buffer.alloc(Number(argv['value-size']), 0x2e)
const HASH = 'php-memcached-libketama'
const keyOf = (i: number): Buffer => Buffer.from(`bench:${i}`, 'latin1')
const log = (m: string): void => void process.stderr.write(`[bench] ${m}\n`)

const dist = new URL('../dist/', import.meta.url)
const { runRebalance } = (await import(new URL('core/jobs/rebalance.js', dist).href)) as typeof import('../src/core/jobs/rebalance.js')
const { runWarm } = (await import(new URL('core/jobs/warm.js', dist).href)) as typeof import('../src/core/jobs/warm.js')
const { runDrain } = (await import(new URL('core/jobs/drain.js', dist).href)) as typeof import('../src/core/jobs/drain.js')
const { FilePoolStore } = (await import(new URL('core/pool/store.js', dist).href)) as typeof import('../src/core/pool/store.js')

const poolOf = (addresses: string[], replicas = 1): Pool => validatePool({ hash: HASH, replicas, servers: addresses.map((address) => ({ address })) }, 'bench')

/** Keys 0..n-1 on their chain under `pool` (pipelined `ms … q`). */
async function load(pool: Pool, n: number): Promise<void> {
  const pp = poolPlacement(pool)
  const conns = await Promise.all(pp.servers.map((s) => MetaConnection.connect(parseAddress(s.address), { requestTimeoutMs: 30_000 })))
  const payloads = conns.map(() => new MetaPayload(512 * 1024))
  const pending: Promise<void>[] = []
  try {
    for (let i = 0; i < n; i++) {
      const key = keyOf(i)
      for (const s of pp.placement.chain(key, pp.replicas)) {
        payloads[s]!.command('ms', key).size(VALUE.length).flag('T', 0).flag('q').end(VALUE)
        if (payloads[s]!.length >= 256 * 1024) pending.push(conns[s]!.batch(payloads[s]!.noop().take(), () => undefined))
      }
      if (pending.length >= 16) await Promise.all(pending.splice(0))
    }
    conns.forEach((c, s) => pending.push(c.batch(payloads[s]!.noop().take(), () => undefined)))
    await Promise.all(pending)
  } finally {
    await Promise.all(conns.map((c) => c.close()))
  }
}

/** Every key of `keys` on every member of its chain under `pool`, with its value; `total` items over the servers. */
async function verify(pool: Pool, keys: (i: number) => boolean, n: number): Promise<string> {
  const pp = poolPlacement(pool)
  const conns = await Promise.all(pp.servers.map((s) => MetaConnection.connect(parseAddress(s.address), { requestTimeoutMs: 30_000 })))
  let missing = 0
  let wrong = 0
  let expected = 0
  try {
    for (let from = 0; from < n; from += 20_000) {
      const to = Math.min(n, from + 20_000)
      const payloads = conns.map(() => new MetaPayload(1024 * 1024))
      const want = conns.map(() => new Set<number>())
      for (let i = from; i < to; i++) {
        if (!keys(i)) continue
        for (const s of pp.placement.chain(keyOf(i), pp.replicas)) {
          payloads[s]!.command('mg', keyOf(i)).flags('v').flag('O', i - from).end()
          want[s]!.add(i - from)
          expected++
        }
      }
      await Promise.all(
        conns.map((c, s) =>
          c.batch(payloads[s]!.noop().take(), (r) => {
            if (r.status !== VA) return
            want[s]!.delete(r.opaque)
            if (!r.value!.equals(VALUE)) wrong++
          }),
        ),
      )
      for (const w of want) missing += w.size
    }
  } finally {
    await Promise.all(conns.map((c) => c.close()))
  }
  return missing === 0 && wrong === 0 ? 'ok' : `FAILED: ${missing} of ${expected} copies missing, ${wrong} wrong values`
}

/**
 * Waits until no server's hash table is growing or due to grow (the engine's hashTableBusy): a
 * table that is, costs the server CPU (the expansion moves every bucket) and makes a hash walk
 * wait for it.
 */
async function steadyTables(addresses: string[]): Promise<void> {
  const t0 = performance.now()
  const conns = await Promise.all(addresses.map((a) => MetaConnection.connect(parseAddress(a), { requestTimeoutMs: 30_000 })))
  try {
    for (;;) {
      const stats = await Promise.all(conns.map((c) => c.stats()))
      if (!stats.some(hashTableBusy)) break
      if (performance.now() - t0 > 60_000) throw new Error('the peers\' hash tables are still growing after 60 s')
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  } finally {
    await Promise.all(conns.map((c) => c.close()))
  }
  log(`peers' hash tables steady after ${((performance.now() - t0) / 1000).toFixed(1)} s`)
}

async function servers(count: number): Promise<MemcachedServer[]> {
  return Promise.all(Array.from({ length: count }, () => startMemcached({ threads: 1, memoryMb: Number(argv.memory) })))
}

const jobDefaults = { handoff: 'move' as const, force: true, threshold: 0.95, purge: true, rate: 0, bandwidth: 0, minTtl: 2, minFree: 0.05, allowEvictions: false, order: 'hot-first' as const, dryRun: false, clientGraceSeconds: 0 }

/** Restarted empty (same ports: the same placement for every run), then N keys at their owners under the first 4. */
async function freshRebalanceSetup(s: MemcachedServer[]): Promise<string[]> {
  await Promise.all(s.map((x) => x.restart()))
  const all = s.map((x) => x.address)
  await load(poolOf(all.slice(0, 4)), N)
  return all
}

async function rebalanceRaw(s: MemcachedServer[]): Promise<{ seconds: number; moved: number; verified: string }> {
  const all = await freshRebalanceSetup(s)
  const started = performance.now()
  const runs = await Promise.all(all.slice(0, 4).map((source, i) => rawMove({ source, destinations: all, hash: HASH, keep: i })))
  const seconds = (performance.now() - started) / 1000
  const moved = runs.reduce((a, r) => a + r.moved, 0)
  return { seconds, moved, verified: await verify(poolOf(all), () => true, N) }
}

async function rebalanceMemdrain(s: MemcachedServer[]): Promise<{ seconds: number; moved: number; verified: string }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'memdrain-bench-ratios-'))
  try {
    const all = await freshRebalanceSetup(s)
    const file = path.join(dir, 'memdrain.json')
    writeFileSync(file, JSON.stringify({ hash: HASH, servers: all.slice(0, 4).map((address) => ({ address })) }))
    const started = performance.now()
    const r = await runRebalance({ store: new FilePoolStore(file), edits: { add: [all[4]!], remove: [], weight: [] }, spoolDir: path.join(dir, 'spool'), ...jobDefaults })
    const seconds = (performance.now() - started) / 1000
    const verified = r.status !== 0 ? `FAILED: status ${r.status}` : await verify(poolOf(all), () => true, N)
    return { seconds, moved: r.moved, verified }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

async function warm(): Promise<{ seconds: number; restored: number; passes: number; verified: string }> {
  const s = await servers(4)
  const dir = mkdtempSync(path.join(tmpdir(), 'memdrain-bench-ratios-'))
  try {
    const all = s.map((x) => x.address)
    const pool = poolOf(all, 2)
    const file = path.join(dir, 'memdrain.json')
    writeFileSync(file, JSON.stringify({ hash: HASH, replicas: 2, servers: all.map((address) => ({ address })) }))
    await load(pool, N)
    await s[0]!.restart()
    if (!argv['fresh-peers']) await steadyTables(all.slice(1))
    const started = performance.now()
    const t0 = performance.now()
    const onEvent = (e: { type: string; source?: string; phase?: string; pass?: number; entries?: number; toMove?: number; moved?: number }): void => {
      if (e.type === 'phase' || e.type === 'dumped' || e.type === 'pass-done') log(`${((performance.now() - t0) / 1000).toFixed(2)} s ${e.source} pass ${e.pass} ${e.type} ${e.phase ?? ''}${e.entries !== undefined ? ` entries ${e.entries} to copy ${e.toMove}` : ''}${e.moved !== undefined ? ` copied ${e.moved}` : ''}`)
    }
    const r = await runWarm({ ...(argv.events ? { onEvent } : {}), store: new FilePoolStore(file), server: all[0]!, threshold: 0.95, rate: 0, bandwidth: 0, minTtl: 2, minFree: 0.05, allowEvictions: false, order: 'hot-first', spoolDir: path.join(dir, 'spool') })
    const seconds = (performance.now() - started) / 1000
    const pp = poolPlacement(pool)
    const onTarget = (i: number): boolean => pp.placement.chain(keyOf(i), 2).includes(0)
    const verified = r.status !== 0 ? `FAILED: status ${r.status}` : await verify(pool, onTarget, N)
    return { seconds, restored: r.restored, passes: r.passes, verified }
  } finally {
    await Promise.all(s.map((x) => x.kill()))
    rmSync(dir, { recursive: true, force: true })
  }
}

async function drain(n: number): Promise<{ seconds: number; moved: number; verified: string }> {
  const s = await servers(4)
  const dir = mkdtempSync(path.join(tmpdir(), 'memdrain-bench-ratios-'))
  try {
    const all = s.map((x) => x.address)
    const file = path.join(dir, 'memdrain.json')
    writeFileSync(file, JSON.stringify({ hash: HASH, servers: all.map((address) => ({ address })) }))
    // n keys on the drained server only (the others empty), as the warm's target receives.
    await load(poolOf(all.slice(0, 1)), n)
    const started = performance.now()
    const r = await runDrain({ store: new FilePoolStore(file), server: all[0]!, spoolDir: path.join(dir, 'spool'), ...jobDefaults })
    const seconds = (performance.now() - started) / 1000
    const verified = r.status !== 0 ? `FAILED: status ${r.status}` : await verify(poolOf(all.slice(1)), () => true, n)
    return { seconds, moved: r.moved, verified }
  } finally {
    await Promise.all(s.map((x) => x.kill()))
    rmSync(dir, { recursive: true, force: true })
  }
}

const lines: string[] = []
if (argv.only === undefined || argv.only === 'rebalance') {
  // The same 5 servers (ports) for both runs, restarted empty and loaded alike: the same keys move.
  const s = await servers(5)
  let raw: Awaited<ReturnType<typeof rebalanceRaw>>
  let md: Awaited<ReturnType<typeof rebalanceMemdrain>>
  try {
    raw = await rebalanceRaw(s)
    log(`rebalance raw: ${raw.seconds.toFixed(2)} s, moved ${raw.moved}, verify ${raw.verified}`)
    md = await rebalanceMemdrain(s)
    log(`rebalance memdrain: ${md.seconds.toFixed(2)} s, moved ${md.moved}, verify ${md.verified}`)
  } finally {
    await Promise.all(s.map((x) => x.kill()))
  }
  const ratio = raw.seconds / md.seconds
  lines.push(
    `rebalance 4→5 (${N} keys, ${HASH}): memdrain ${md.seconds.toFixed(2)} s (${md.moved} moved, ${Math.round(md.moved / md.seconds)} moved keys/s), raw mover ${raw.seconds.toFixed(2)} s (${raw.moved} moved); ratio ${ratio.toFixed(2)} (goal ≥ 0.8: ${ratio >= 0.8 ? 'met' : 'MISSED'}); verified ${md.verified} / raw ${raw.verified}`,
  )
}
if (argv.only === undefined || argv.only === 'warm') {
  // Alternately (a machine's slow spell hits both sides alike); the fastest run of each side is
  // the least disturbed one.
  type Run = { keys: number; seconds: number; verified: string }
  const warms: Run[] = []
  const drains: Run[] = []
  for (let i = 0; i < REPEAT; i++) {
    const w = await warm()
    log(`warm: ${w.seconds.toFixed(2)} s, restored ${w.restored}, ${w.passes} passes over its peers, verify ${w.verified}`)
    warms.push({ keys: w.restored, seconds: w.seconds, verified: w.verified })
    if (argv['no-reference']) continue
    const d = await drain(w.restored)
    log(`drain: ${d.seconds.toFixed(2)} s, moved ${d.moved}, verify ${d.verified}`)
    drains.push({ keys: d.moved, seconds: d.seconds, verified: d.verified })
    if (REPEAT > 1) log(`run ${i + 1}: ratio ${(w.restored / w.seconds / (d.moved / d.seconds)).toFixed(2)}`)
  }
  if (argv['no-reference']) process.exit(0)
  const rate = (r: Run): number => r.keys / r.seconds
  const fastest = (runs: Run[]): Run => runs.reduce((a, b) => (rate(b) > rate(a) ? b : a))
  const w = fastest(warms)
  const d = fastest(drains)
  const ratio = rate(w) / rate(d)
  const verified = [...warms, ...drains].every((r) => r.verified === 'ok') ? 'ok' : 'FAILED'
  lines.push(
    `warm (${N} keys, replicas 2, 4 servers, ${argv['fresh-peers'] ? 'freshly loaded peers' : 'steady peers'}${REPEAT > 1 ? `, fastest of ${REPEAT} runs each` : ''}): ${Math.round(rate(w))} keys/s (${w.keys} restored in ${w.seconds.toFixed(2)} s); drain of as many keys ${Math.round(rate(d))} keys/s; ratio ${ratio.toFixed(2)} (goal ≥ 0.8: ${ratio >= 0.8 ? 'met' : 'MISSED'}); verified ${verified}` +
      (REPEAT > 1 ? `; per run: ${warms.map((x, i) => (rate(x) / rate(drains[i]!)).toFixed(2)).join(', ')}` : ''),
  )
}
process.stdout.write(`\n${lines.join('\n')}\n`)
process.exit(0)
