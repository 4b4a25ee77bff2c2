/**
 * Warm and mirror benchmark (in process, against memcached servers it starts and kills by PID):
 *
 *   node --import tsx scripts/bench-jobs.ts [--keys 200000] [--value-size 100] [--writes 5000] [--interval 5] [--seconds 30]
 *
 * 1. warm: 3 servers, php-memcached-libketama, replicas 2; N items written to both members of
 *    their chain; one server restarted empty; `runWarm` unthrottled. Prints keys restored per
 *    second (wall time of the job, both peers dumped one after the other), and checks that every
 *    key whose chain includes the server is back.
 * 2. mirror, first copy: N items on the active; one unthrottled pass (`--once`). Keys/s.
 * 3. mirror lag: the active holds N items and a writer sets random keys at --writes per second
 *    (plus a clock key holding the write time) while the mirror runs with --interval for
 *    --seconds. Reported: the lag each pass reports (start of the previous pass's dump → end of
 *    this pass: a bound on the age of the oldest change not yet copied), and the measured
 *    staleness of the passive (sampled every 100 ms: now − the time written in the clock key's
 *    value as the passive holds it), as median and max.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
import { startMemcached, type MemcachedServer } from '../test/helpers/memcached.js'
import { MetaConnection, MetaPayload, parseAddress, VA } from '../src/core/protocol/index.js'
import { FilePoolStore } from '../src/core/pool/store.js'
import { validatePool } from '../src/core/pool/validate.js'
import { poolPlacement } from '../src/core/pool/placement.js'
import { poolToDocument } from '../src/core/pool/model.js'
import { writeFileAtomic } from '../src/core/pool/atomic-write.js'
import { runWarm } from '../src/core/jobs/warm.js'
import { runMirror, type MirrorPass } from '../src/core/jobs/mirror.js'
import { JOB_DEFAULTS } from '../src/core/defaults.js'

const { values: argv } = parseArgs({
  options: {
    keys: { type: 'string', default: '200000' },
    'value-size': { type: 'string', default: '100' },
    writes: { type: 'string', default: '5000' },
    interval: { type: 'string', default: '5' },
    seconds: { type: 'string', default: '30' },
    only: { type: 'string' },
  },
  strict: true,
})
const N = Number(argv.keys)
const VALUE = Buffer.alloc(Number(argv['value-size']), 'x')
const dir = mkdtempSync(path.join(tmpdir(), 'memdrain-bench-jobs-'))
const servers: MemcachedServer[] = []
const start = async (): Promise<MemcachedServer> => {
  const s = await startMemcached({ memoryMb: Math.max(128, Math.ceil((N * (VALUE.length + 120)) / 1e6) * 2) })
  servers.push(s)
  return s
}
const key = (i: number): Buffer => Buffer.from(`bench:${i}`)
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0
const max = (xs: number[]): number => xs.reduce((m, x) => Math.max(m, x), 0)

/** Sets keys [from, to) where `want(i)`, in pipelined batches of 1000. */
async function load(conn: MetaConnection, from: number, to: number, want: (i: number) => boolean = () => true): Promise<void> {
  const p = new MetaPayload()
  let n = 0
  for (let i = from; i < to; i++) {
    if (!want(i)) continue
    p.command('ms', key(i)).size(VALUE.length).flag('T', 0).flags('q').end(VALUE)
    if (++n % 1000 === 0) await conn.batch(p.noop().take(), () => undefined)
  }
  await conn.batch(p.noop().take(), () => undefined)
}

async function benchWarm(): Promise<void> {
  const s = await Promise.all([start(), start(), start()])
  const pool = validatePool({ hash: 'php-memcached-libketama', replicas: 2, servers: s.map((x) => ({ address: x.address })) }, 'bench')
  const file = path.join(dir, 'pool.json')
  await writeFileAtomic(file, JSON.stringify(poolToDocument(pool)))
  const pp = poolPlacement(pool)
  const chains = Array.from({ length: N }, (_, i) => pp.placement.chain(key(i), 2))
  for (const [j, server] of s.entries()) {
    const c = await MetaConnection.connect(parseAddress(server.address))
    await load(c, 0, N, (i) => chains[i]!.includes(j))
    await c.close()
  }
  const target = s[1]!
  const belongs = chains.filter((c) => c.includes(1)).length
  await target.restart()
  const r = await runWarm({ store: new FilePoolStore(file), server: target.address, threshold: JOB_DEFAULTS.threshold, rate: 0, bandwidth: 0, minTtl: 0, minFree: 0.05, allowEvictions: false, order: 'hot-first', spoolDir: path.join(dir, 'spool') })
  const c = await MetaConnection.connect(parseAddress(target.address))
  const items = Number((await c.stats()).get('curr_items'))
  await c.close()
  console.log(
    `warm: ${N} keys on 3 servers (replicas 2), ${belongs} belong on the restarted server: restored ${r.restored} in ${r.durationSeconds.toFixed(2)} s = ` +
      `${Math.round(r.restored / r.durationSeconds)} keys/s restored (${Math.round(r.keysPerSecond)} keys/s read); server holds ${items}; status ${r.status}`,
  )
  await Promise.all(s.map((x) => x.kill()))
}

async function benchMirrorCopy(): Promise<void> {
  const [a, p] = await Promise.all([start(), start()])
  const c = await MetaConnection.connect(parseAddress(a.address))
  await load(c, 0, N)
  await c.close()
  const r = await runMirror({ active: a.address, passive: p.address, intervalSeconds: 1, once: true, delete: false, rate: 0, bandwidth: 0, minTtl: 0, minFree: 0.05, allowEvictions: false, order: 'hot-first', spoolDir: path.join(dir, 'spool') })
  const ms = r.first!.durationMs
  console.log(`mirror first copy: ${r.copied} keys in ${(ms / 1000).toFixed(2)} s = ${Math.round(r.copied / (ms / 1000))} keys/s; key→CAS map ${(r.mapBytes / 1e6).toFixed(1)} MB for ${r.keys} keys`)
  await Promise.all([a.kill(), p.kill()])
}

async function benchMirrorLag(): Promise<void> {
  const [a, p] = await Promise.all([start(), start()])
  const writer = await MetaConnection.connect(parseAddress(a.address))
  await load(writer, 0, N)
  const interval = Number(argv.interval)
  const rate = Number(argv.writes)
  const ac = new AbortController()
  const passes: MirrorPass[] = []
  const mirror = runMirror({
    active: a.address, passive: p.address, intervalSeconds: interval, once: false, delete: true, rate: 0, bandwidth: 0, minTtl: 0, minFree: 0.05, allowEvictions: false,
    order: 'hot-first', spoolDir: path.join(dir, 'spool'), signal: ac.signal,
    onEvent: (e) => e.type === 'mirror-pass' && passes.push(e.result),
  })
  while (passes.length < 1) await sleep(50)
  // Writer: `rate` sets per second in batches every 10 ms, random keys, plus the clock key.
  const clock = Buffer.from('bench:clock')
  let written = 0
  let writing = true
  const started = Date.now()
  const writeLoop = (async () => {
    let seed = 12345
    while (writing) {
      const due = Math.floor(((Date.now() - started) / 1000) * rate) - written
      if (due > 0) {
        const pl = new MetaPayload()
        for (let j = 0; j < due; j++) {
          seed = (Math.imul(seed, 1103515245) + 12345) >>> 0
          const v = Buffer.from(`w${written + j}`)
          pl.command('ms', key(seed % N)).size(v.length).flag('T', 0).flags('q').end(v)
        }
        const now = Buffer.from(String(Date.now()))
        pl.command('ms', clock).size(now.length).flag('T', 0).flags('q').end(now)
        await writer.batch(pl.noop().take(), () => undefined)
        written += due
      }
      await sleep(10)
    }
  })()
  const reader = await MetaConnection.connect(parseAddress(p.address))
  const staleness: number[] = []
  const passesBefore = passes.length
  const until = Date.now() + Number(argv.seconds) * 1000
  while (Date.now() < until) {
    const pl = new MetaPayload()
    pl.command('mg', clock).flags('v q').end()
    let seen: number | undefined
    await reader.batch(pl.noop().take(), (r) => {
      if (r.status === VA) seen = Number(r.value!.toString())
    })
    if (seen !== undefined) staleness.push(Date.now() - seen)
    await sleep(100)
  }
  writing = false
  await writeLoop
  const secs = (Date.now() - started) / 1000
  ac.abort()
  await mirror
  await Promise.all([writer.close(), reader.close()])
  const during = passes.slice(passesBefore)
  const lags = during.map((x) => x.lagMs)
  console.log(
    `mirror lag: ${N} keys, writer ${Math.round(written / secs)} writes/s, --interval ${interval}: ${during.length} passes, ` +
      `copied per pass median ${median(during.map((x) => x.copied))}, pass duration median ${median(during.map((x) => x.durationMs))} ms; ` +
      `reported lag median ${(median(lags) / 1000).toFixed(2)} s, max ${(max(lags) / 1000).toFixed(2)} s; ` +
      `measured passive staleness median ${(median(staleness) / 1000).toFixed(2)} s, max ${(max(staleness) / 1000).toFixed(2)} s`,
  )
  await Promise.all([a.kill(), p.kill()])
}

try {
  const only = argv.only
  if (only === undefined || only === 'warm') await benchWarm()
  if (only === undefined || only === 'mirror-copy') await benchMirrorCopy()
  if (only === undefined || only === 'mirror-lag') await benchMirrorLag()
} finally {
  await Promise.all(servers.map((s) => s.kill()))
  rmSync(dir, { recursive: true, force: true })
}
