/**
 * mirror lag with the follower, and what the follower costs the active (against memcached
 * servers it starts and kills by PID):
 *
 *   node --import tsx scripts/bench-mirror-follow.ts [--keys 50000] [--writes 2000] [--seconds 20] [--interval 5] [--cpu-writes 5000]
 *
 * 1. Lag: the active holds --keys items; `runMirror` runs with --interval (default 5 s, the
 *    command's default). A writer sets random keys at --writes per second, each value carrying
 *    a version; a prober polls the passive (pipelined mg, every millisecond) for each write's
 *    version and records when it first sees it (or a later one). Reported: lag p50 / p99 / max
 *    over the writes of the measuring window, and writes never seen.
 * 2. CPU: the active's rusage (user + system, from `stats`) over --seconds of --cpu-writes sets per
 *    second, without and then with a SourceFollower attached. Reported: CPU seconds per second of
 *    each, and the follower's extra in percent.
 *
 * Other processes on the machine disturb both figures: rerun on a quiet machine.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
import { startMemcached } from '../test/helpers/memcached.js'
import { MetaConnection, MetaPayload, parseAddress, VA } from '../src/core/protocol/index.js'
import { runMirror } from '../src/core/jobs/mirror.js'
import { SourceFollower } from '../src/core/engine/follower.js'

const { values: argv } = parseArgs({
  options: {
    keys: { type: 'string', default: '50000' },
    writes: { type: 'string', default: '2000' },
    seconds: { type: 'string', default: '20' },
    interval: { type: 'string', default: '5' },
    'cpu-writes': { type: 'string', default: '5000' },
    only: { type: 'string' },
  },
})
const KEYS = Number(argv.keys)
const SECONDS = Number(argv.seconds)

function pct(sorted: number[], p: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!
}

/** Sets `perSecond` random keys a second (batches every 10 ms) until `until`; `onWrite` sees each (key index, version, time). */
async function writer(conn: MetaConnection, perSecond: number, until: number, onWrite?: (i: number, version: number, at: number) => void): Promise<number> {
  const versions = new Uint32Array(KEYS)
  let written = 0
  const t0 = performance.now()
  while (Date.now() < until) {
    const due = Math.floor(((performance.now() - t0) / 1000) * perSecond) - written
    if (due > 0) {
      const p = new MetaPayload()
      const at = performance.now()
      for (let j = 0; j < due; j++) {
        const i = Math.floor(Math.random() * KEYS)
        const v = ++versions[i]!
        const value = Buffer.from(`${v}|${'x'.repeat(90)}`)
        p.command('ms', Buffer.from(`k:${i}`)).size(value.length).flags('q').end(value)
        onWrite?.(i, v, at)
      }
      await conn.batch(p.noop().take(), () => undefined)
      written += due
    }
    await sleep(10)
  }
  return written
}

async function lagBench(): Promise<void> {
  const [active, passive] = await Promise.all([startMemcached({ memoryMb: 256 }), startMemcached({ memoryMb: 256 })])
  const spool = mkdtempSync(path.join(tmpdir(), 'memdrain-bench-mirror-'))
  const ac = new AbortController()
  try {
    const a = await MetaConnection.connect(parseAddress(active.address))
    for (let i = 0; i < KEYS; i += 1000) {
      const p = new MetaPayload()
      for (let j = i; j < Math.min(KEYS, i + 1000); j++) p.command('ms', Buffer.from(`k:${j}`)).size(92).flags('q').end(Buffer.from(`0|${'x'.repeat(90)}`))
      await a.batch(p.noop().take(), () => undefined)
    }
    let firstPass = false
    const mirror = runMirror({
      active: active.address,
      passive: passive.address,
      intervalSeconds: Number(argv.interval),
      once: false,
      delete: false,
      rate: 0,
      bandwidth: 0,
      minTtl: 0,
      minFree: 0.05,
      allowEvictions: false,
      order: 'hot-first',
      spoolDir: spool,
      signal: ac.signal,
      onEvent: (e) => {
        if (e.type === 'mirror-pass') firstPass = true
        if (e.type === 'mirror-follow' && e.state !== 'lost') console.log(`  follow: ${e.message}`)
      },
    })
    while (!firstPass) await sleep(50)
    // Pending probes: key index → [version, write time]; the prober checks each until the passive has it.
    const pending = new Map<number, { version: number; at: number }>()
    const lags: number[] = []
    const pc = await MetaConnection.connect(parseAddress(passive.address))
    let stopProbe = false
    let probeDeadline = Infinity
    const prober = (async () => {
      while (!stopProbe || pending.size > 0) {
        const batch = [...pending.entries()].slice(0, 2000)
        if (batch.length > 0) {
          const p = new MetaPayload()
          batch.forEach(([i], n) => p.command('mg', Buffer.from(`k:${i}`)).flags('v q').flag('O', n).end())
          const now = performance.now()
          await pc.batch(p.noop().take(), (r) => {
            if (r.status !== VA || r.opaque < 0 || r.opaque >= batch.length) return
            const [i, want] = batch[r.opaque]!
            const got = Number(r.value!.toString('latin1', 0, r.value!.indexOf(0x7c)))
            if (got >= want.version && pending.get(i) === want) {
              pending.delete(i)
              lags.push(now - want.at)
            }
          })
        }
        if (stopProbe && performance.now() > probeDeadline) break
        await sleep(1)
      }
    })()
    const written = await writer(a, Number(argv.writes), Date.now() + SECONDS * 1000, (i, version, at) => pending.set(i, { version, at }))
    stopProbe = true
    probeDeadline = performance.now() + (Number(argv.interval) + 2) * 1000
    await prober
    ac.abort()
    const r = await mirror
    lags.sort((x, y) => x - y)
    console.log(
      `mirror lag, ${KEYS} keys, ${argv.writes} writes/s for ${SECONDS} s, --interval ${argv.interval}: ${written} writes, probed ${lags.length} (later writes of a key supersede earlier ones), ` +
        `p50 ${pct(lags, 0.5).toFixed(1)} ms, p99 ${pct(lags, 0.99).toFixed(1)} ms, max ${lags.at(-1)?.toFixed(1)} ms, never seen ${pending.size}; ` +
        `followed ${JSON.stringify(r.followed)}, passes ${r.passes}`,
    )
    await Promise.all([a.close(), pc.close()])
  } finally {
    ac.abort()
    await Promise.all([active.kill(), passive.kill()])
    rmSync(spool, { recursive: true, force: true })
  }
}

async function cpuOf(conn: MetaConnection): Promise<number> {
  const st = await conn.stats()
  return Number(st.get('rusage_user')) + Number(st.get('rusage_system'))
}

async function cpuBench(): Promise<void> {
  const s = await startMemcached({ memoryMb: 256 })
  try {
    const a = await MetaConnection.connect(parseAddress(s.address))
    const stats = await MetaConnection.connect(parseAddress(s.address))
    const rate = Number(argv['cpu-writes'])
    const measure = async (label: string): Promise<number> => {
      const c0 = await cpuOf(stats)
      const t0 = performance.now()
      const n = await writer(a, rate, Date.now() + SECONDS * 1000)
      const cpu = (await cpuOf(stats)) - c0
      const perSec = cpu / ((performance.now() - t0) / 1000)
      console.log(`  ${label}: ${n} sets, active CPU ${(perSec * 100).toFixed(2)} % of a core`)
      return perSec
    }
    const without = await measure('without the follower')
    const f = await SourceFollower.start(s.address)
    let stopped = false
    const drain = (async () => {
      while (f.stats.events >= 0) {
        await f.wait(200)
        f.take(100_000)
        f.takeLoss()
        if (stopped) return
      }
    })()
    const withF = await measure('with the follower')
    stopped = true
    await f.stop()
    await drain
    console.log(`watcher cost at ${rate} writes/s: +${(((withF - without) / without) * 100).toFixed(1)} % of the active's CPU (${(without * 100).toFixed(2)} → ${(withF * 100).toFixed(2)} % of a core); events ${f.stats.events}, losses ${f.stats.losses}`)
    await Promise.all([a.close(), stats.close()])
  } finally {
    await s.kill()
  }
}

if (argv.only === undefined || argv.only === 'lag') await lagBench()
if (argv.only === undefined || argv.only === 'cpu') await cpuBench()
process.exit(0)
