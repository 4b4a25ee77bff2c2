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
 * 2. CPU: what following a source costs that memcached, from /proc/<pid>/stat and per thread
 *    (/proc/<pid>/task/*): --clients connections load it with --cpu-writes sets a second (the goal
 *    row), then again with --cpu-reads gets a second on top (a realistic read share, its own row),
 *    each for --seconds without a watcher, with a SourceFollower attached (`watch mutations`, one
 *    connection, events taken and dropped), and with the follower plus the re-read at the source
 *    of every changed key (what mirror and the copy hand-off's refresher do with an event);
 *    alternated --reps times. Reported: % of a core in total, of memcached's logger thread
 *    (mc-log) and of its workers, and the extra over no watcher.
 *
 *    node --import tsx scripts/bench-mirror-follow.ts --only cpu [--cpu-writes 5000] [--cpu-reads 45000] [--clients 20] [--reps 2]
 *
 * Other processes on the machine disturb both figures: rerun on a quiet machine.
 */
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { connect } from 'node:net'
import { once } from 'node:events'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { cpus, loadavg, tmpdir } from 'node:os'
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
    'cpu-reads': { type: 'string', default: '45000' },
    clients: { type: 'string', default: '20' },
    reps: { type: 'string', default: '2' },
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
    // Where the lag comes from: how late memcached's logger delivers a write's watch line (its
    // `ts=` against the arrival here, on a second watch connection), and this process's own
    // event-loop delay (the mirror, the writer and the prober share it).
    const delivery: number[] = []
    /** Per key: when its latest watch line arrived here; the lag after it is memdrain's (re-read, write, and the prober's poll). */
    const lineAt = new Map<number, number>()
    const after: number[] = []
    const tap = connect({ host: '127.0.0.1', port: parseAddress(active.address).port })
    await once(tap, 'connect')
    let tapped = ''
    tap.on('data', (d: Buffer) => {
      const now = Date.now()
      tapped += d.toString('latin1')
      for (let nl = tapped.indexOf('\n'); nl >= 0; nl = tapped.indexOf('\n')) {
        const m = /^ts=(\d+)\.(\d+) .* key=k(?::|%3A)(\d+) /.exec(tapped.slice(0, nl))
        if (m !== null) {
          delivery.push(now - (Number(m[1]) * 1000 + Number(m[2]) / 1000))
          lineAt.set(Number(m[3]), performance.now())
        }
        tapped = tapped.slice(nl + 1)
      }
    })
    tap.write('watch mutations\r\n')
    const loop = monitorEventLoopDelay({ resolution: 1 })
    loop.enable()
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
              const line = lineAt.get(i)
              if (line !== undefined && line >= want.at) after.push(Math.max(0, now - line))
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
    loop.disable()
    tap.destroy()
    lags.sort((x, y) => x - y)
    delivery.sort((x, y) => x - y)
    after.sort((x, y) => x - y)
    console.log(
      `mirror lag, ${KEYS} keys, ${argv.writes} writes/s for ${SECONDS} s, --interval ${argv.interval}: ${written} writes, probed ${lags.length} (later writes of a key supersede earlier ones), ` +
        `p50 ${pct(lags, 0.5).toFixed(1)} ms, p99 ${pct(lags, 0.99).toFixed(1)} ms, max ${lags.at(-1)?.toFixed(1)} ms, never seen ${pending.size}; ` +
        `followed ${JSON.stringify(r.followed)}, passes ${r.passes}`,
    )
    console.log(
      `  of which: memcached's watch line delivery p50 ${pct(delivery, 0.5).toFixed(1)} ms, p99 ${pct(delivery, 0.99).toFixed(1)} ms, max ${delivery.at(-1)?.toFixed(1)} ms; ` +
        `from the line's arrival to the passive holding the write (memdrain's part) p50 ${pct(after, 0.5).toFixed(1)} ms, p99 ${pct(after, 0.99).toFixed(1)} ms; ` +
        `this process's event-loop delay p50 ${(loop.percentile(50) / 1e6).toFixed(1)} ms, p99 ${(loop.percentile(99) / 1e6).toFixed(1)} ms, max ${(loop.max / 1e6).toFixed(1)} ms; load average ${loadavg()[0]!.toFixed(1)} on ${cpus().length} cores`,
    )
    await Promise.all([a.close(), pc.close()])
  } finally {
    ac.abort()
    await Promise.all([active.kill(), passive.kill()])
    rmSync(spool, { recursive: true, force: true })
  }
}

/** CPU seconds of a process, and per thread name (mc-worker, mc-log, …), from /proc (user + system). */
function cpuOf(pid: number): { total: number; threads: Map<string, number> } {
  const ticks = (statPath: string): number => {
    const st = readFileSync(statPath, 'latin1')
    const f = st.slice(st.lastIndexOf(')') + 2).split(' ')
    return (Number(f[11]) + Number(f[12])) / CLK_TCK
  }
  const threads = new Map<string, number>()
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const name = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'latin1').trim()
      threads.set(name, (threads.get(name) ?? 0) + ticks(`/proc/${pid}/task/${tid}/stat`))
    } catch {
      // A thread that ended meanwhile.
    }
  }
  return { total: ticks(`/proc/${pid}/stat`), threads }
}
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100

/**
 * The application's load on the source: `clients` connections, each sending its share of the
 * due sets (and gets) every 10 ms (small pipelines, as many application processes would).
 */
async function appLoad(conns: MetaConnection[], writesPerSecond: number, readsPerSecond: number, until: number): Promise<number> {
  let done = 0
  const t0 = performance.now()
  let writes = 0
  let reads = 0
  const value = Buffer.from(`1|${'x'.repeat(90)}`)
  while (Date.now() < until) {
    const elapsed = (performance.now() - t0) / 1000
    const dueW = Math.floor(elapsed * writesPerSecond) - writes
    const dueR = Math.floor(elapsed * readsPerSecond) - reads
    writes += dueW
    reads += dueR
    await Promise.all(
      conns.map(async (c, n) => {
        const p = new MetaPayload()
        let any = false
        for (let j = n; j < dueW; j += conns.length) {
          p.command('ms', Buffer.from(`k:${Math.floor(Math.random() * KEYS)}`)).size(value.length).flags('q').end(value)
          any = true
        }
        for (let j = n; j < dueR; j += conns.length) {
          p.command('mg', Buffer.from(`k:${Math.floor(Math.random() * KEYS)}`)).flags('v q').end()
          any = true
        }
        if (any) await c.batch(p.noop().take(), () => undefined)
      }),
    )
    done += dueW + dueR
    await sleep(10)
  }
  return done
}

type Watch = 'none' | 'watcher' | 'watcher+re-read'

async function cpuBench(): Promise<void> {
  const s = await startMemcached({ memoryMb: 256 })
  const reps = Number(argv.reps)
  try {
    const seed = await MetaConnection.connect(parseAddress(s.address))
    for (let i = 0; i < KEYS; i += 1000) {
      const p = new MetaPayload()
      for (let j = i; j < Math.min(KEYS, i + 1000); j++) p.command('ms', Buffer.from(`k:${j}`)).size(92).flags('q').end(Buffer.from(`0|${'x'.repeat(90)}`))
      await seed.batch(p.noop().take(), () => undefined)
    }
    const conns = await Promise.all(Array.from({ length: Number(argv.clients) }, () => MetaConnection.connect(parseAddress(s.address))))
    /** CPU of the source over one window of the load, with or without a follower attached. */
    const measure = async (writes: number, reads: number, watch: Watch): Promise<{ cpu: number; log: number; workers: number }> => {
      let f: SourceFollower | undefined
      let stopped = false
      let drain: Promise<void> = Promise.resolve()
      if (watch !== 'none') {
        f = await SourceFollower.start(s.address)
        const follower = f
        // What mirror and the copy hand-off's refresher do with each event: re-read the key at the source.
        drain = (async () => {
          while (!stopped) {
            await follower.wait(200)
            const keys = follower.take(watch === 'watcher+re-read' ? 200 : 100_000)
            follower.takeLoss()
            if (watch === 'watcher+re-read' && keys.length > 0) {
              const p = new MetaPayload()
              for (const k of keys) p.command('mg', k).flags('v f t c q').end()
              await seed.batch(p.noop().take(), () => undefined)
            }
          }
        })()
        await sleep(300)
      }
      const c0 = cpuOf(s.pid)
      const t0 = performance.now()
      await appLoad(conns, writes, reads, Date.now() + SECONDS * 1000)
      const c1 = cpuOf(s.pid)
      const secs = (performance.now() - t0) / 1000
      stopped = true
      await f?.stop()
      await drain
      const per = (name: string): number => ((c1.threads.get(name) ?? 0) - (c0.threads.get(name) ?? 0)) / secs
      return { cpu: (c1.total - c0.total) / secs, log: per('mc-log'), workers: per('mc-worker') }
    }
    const rows: [string, number, number][] = [
      [`goal row: ${argv['cpu-writes']} writes/s`, Number(argv['cpu-writes']), 0],
      [`with reads: ${argv['cpu-writes']} writes/s + ${argv['cpu-reads']} reads/s`, Number(argv['cpu-writes']), Number(argv['cpu-reads'])],
    ]
    const pctOf = (x: number): string => `${(x * 100).toFixed(2)} %`
    for (const [label, writes, reads] of rows) {
      // Alternated, so a change in the machine's other load hits each side alike.
      const sums = new Map<Watch, { cpu: number; log: number; workers: number }>()
      for (let r = 0; r < reps; r++) {
        for (const watch of ['none', 'watcher', 'watcher+re-read'] as Watch[]) {
          const m = await measure(writes, reads, watch)
          const sum = sums.get(watch) ?? { cpu: 0, log: 0, workers: 0 }
          sums.set(watch, { cpu: sum.cpu + m.cpu / reps, log: sum.log + m.log / reps, workers: sum.workers + m.workers / reps })
        }
      }
      const base = sums.get('none')!
      console.log(`${label} (${argv.clients} connections, ${reps} × ${SECONDS} s each, source CPU from /proc in % of a core):`)
      for (const [watch, m] of sums) {
        const extra = watch === 'none' ? '' : `, +${(((m.cpu - base.cpu) / base.cpu) * 100).toFixed(1)} % over none`
        console.log(`  ${watch.padEnd(16)} total ${pctOf(m.cpu)} (mc-log ${pctOf(m.log)}, mc-worker ${pctOf(m.workers)})${extra}`)
      }
    }
    await Promise.all([seed.close(), ...conns.map((c) => c.close())])
  } finally {
    await s.kill()
  }
}

if (argv.only === undefined || argv.only === 'lag') await lagBench()
if (argv.only === undefined || argv.only === 'cpu') await cpuBench()
process.exit(0)
