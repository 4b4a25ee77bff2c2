/**
 * Soak: repeat random faults around real drains and count what went wrong.
 *
 *   npm run soak -- --runs 50            random faults, seeds from the clock
 *   npm run soak -- --runs 5 --seed 42   replay (run i uses seed 42 + i)
 *   npm run soak -- --faults kill-move,stall
 *
 * Faults: kill-move / kill-copy (kill -9 of the drain CLI at 1-3 random moments, then reruns),
 * kill-rebalance (the same around `memdrain rebalance` 4→5 servers, move or copy hand-off at random),
 * stall (SIGSTOP a random destination for 1-4 s mid-drain), dest-kill (kill a destination,
 * rerun after restarting it). After each run every key nobody modified must be at its owner with
 * its value, flags and TTL: the summary counts keys lost, stale and misplaced (goal: 0) and exits
 * 1 if any. Loopback only; every memcached it starts is killed by PID at the end of its run.
 */
import { parseArgs } from 'node:util'
import { runKillScenario, prng } from '../test/helpers/kill-scenario.js'
import { Conns, drainOptions, getAll, keysOf, setAll, startPool } from '../test/integration/drain.fixtures.js'
import { runDrain } from '../src/core/jobs/drain.js'

const FAULTS = ['kill-move', 'kill-copy', 'kill-rebalance', 'stall', 'dest-kill'] as const
type Fault = (typeof FAULTS)[number]

interface Outcome {
  fault: Fault
  seed: number
  kills: number
  lost: number
  stale: number
  misplaced: number
  invalidPoolFiles: number
  note: string
}

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '20' },
    seed: { type: 'string' },
    faults: { type: 'string', default: FAULTS.join(',') },
    keys: { type: 'string', default: '3000' },
  },
})
const runs = Number(values.runs)
const baseSeed = values.seed !== undefined ? Number(values.seed) : Date.now() % 1_000_000
const faults = values.faults.split(',').map((f) => f.trim()) as Fault[]
const keyCount = Number(values.keys)
for (const f of faults) if (!(FAULTS as readonly string[]).includes(f)) throw new Error(`unknown fault ${f}; one of ${FAULTS.join(', ')}`)

/** A drain with a destination stalled (SIGSTOP) or killed at a random moment, then checked (and rerun if needed). */
async function serverFault(fault: 'stall' | 'dest-kill', seed: number): Promise<Outcome> {
  const rnd = prng(seed)
  const pool = await startPool(4, { hash: 'php-memcached-libketama', clients: 'pool-aware' })
  const conns = new Conns()
  try {
    const [src, ...dests] = pool.servers
    const victim = dests[Math.floor(rnd() * dests.length)]!
    const keys = keysOf(`soak:${seed}:`, keyCount)
    await setAll(await conns.get(src!.address), keys.map((key, i) => ({ key, value: Buffer.from(`v${i}-${seed}`), flags: i, ttl: i % 2 === 0 ? 0 : 3600 })))
    const at = 200 + Math.floor(rnd() * 1500)
    const stallMs = 1000 + Math.floor(rnd() * 3000)
    const timer = setTimeout(() => {
      if (fault === 'stall') {
        victim.pause()
        setTimeout(() => victim.resume(), stallMs)
      } else void victim.kill()
    }, at)
    let r = await runDrain(drainOptions(pool, src!.address, { rate: 1500, batchSize: 100, threshold: 1 }))
    clearTimeout(timer)
    let lostWithVictim = 0
    if (fault === 'dest-kill') {
      lostWithVictim = r.destinations.find((d) => d.address === victim.address)?.keys ?? 0
      if (!victim.running) await victim.restart()
    } else {
      victim.resume()
    }
    if (r.state !== 'removed') r = await runDrain(drainOptions(pool, src!.address, { threshold: 1 }))
    let lost = 0
    let stale = 0
    let misplaced = 0
    const holders = new Map<string, number>()
    for (const s of pool.servers) for (const hex of (await getAll(await conns.get(s.address), keys)).keys()) holders.set(hex, (holders.get(hex) ?? 0) + 1)
    for (const [i, key] of keys.entries()) {
      const owner = pool.chainWithout(src!.address, key)[0]!
      const got = (await getAll(await conns.get(owner), [key])).get(key.toString('hex'))
      if ((holders.get(key.toString('hex')) ?? 0) > (got === undefined ? 0 : 1)) misplaced++
      if (got === undefined) {
        // Keys the killed destination held died with it: not memdrain's loss.
        if (!(fault === 'dest-kill' && owner === victim.address)) lost++
        continue
      }
      const ttlOk = i % 2 === 0 ? got.ttl === -1 : got.ttl > 0 && got.ttl <= 3600
      if (got.value.toString() !== `v${i}-${seed}` || got.flags !== i || !ttlOk) stale++
    }
    return {
      fault,
      seed,
      kills: 0,
      lost,
      stale,
      misplaced,
      invalidPoolFiles: 0,
      note: `${fault === 'stall' ? `stalled ${stallMs} ms` : `killed (it had ${lostWithVictim} keys)`} at ${at} ms, final ${r.state}, status ${r.status}`,
    }
  } finally {
    await conns.close()
    await pool.stop()
  }
}

async function main(): Promise<void> {
  const outcomes: Outcome[] = []
  const started = Date.now()
  for (let i = 0; i < runs; i++) {
    const seed = baseSeed + i
    const fault = faults[Math.floor(prng(seed * 7 + 1)() * faults.length)]!
    let o: Outcome
    if (fault === 'kill-move' || fault === 'kill-copy' || fault === 'kill-rebalance') {
      const rnd = prng(seed)
      const kills = 1 + Math.floor(rnd() * 3)
      const r =
        fault === 'kill-rebalance'
          ? // A rebalance moves only the keys whose owner changes: a lower rate keeps the kills mid-job.
            await runKillScenario({ seed, job: 'rebalance', handoff: rnd() < 0.5 ? 'move' : 'copy', kills, keys: keyCount, rate: 200, maxMs: 1800 })
          : await runKillScenario({ seed, handoff: fault === 'kill-move' ? 'move' : 'copy', kills, keys: keyCount })
      o = {
        fault,
        seed,
        kills: r.kills,
        lost: r.lost,
        stale: r.stale,
        misplaced: r.misplaced,
        invalidPoolFiles: r.invalidPoolFiles,
        note: `${r.job === 'rebalance' ? `rebalance ${r.handoff}, ` : ''}${r.runs} runs, final ${r.finalState} (exit ${r.finalCode}); killed during: ${r.killedDuring.map((k) => k.replace(/^.*?: /, '').slice(0, 60)).join(' | ')}`,
      }
    } else {
      o = await serverFault(fault, seed)
    }
    outcomes.push(o)
    const bad = o.lost + o.stale + o.misplaced + o.invalidPoolFiles > 0
    process.stdout.write(`run ${i + 1}/${runs} seed ${seed} ${o.fault}: lost ${o.lost}, stale ${o.stale}, misplaced ${o.misplaced}${bad ? '  <-- FAIL' : ''}  (${o.note})\n`)
  }
  const sum = (k: 'kills' | 'lost' | 'stale' | 'misplaced' | 'invalidPoolFiles'): number => outcomes.reduce((n, o) => n + o[k], 0)
  const perFault = FAULTS.map((f) => `${f} ${outcomes.filter((o) => o.fault === f).length}`).join(', ')
  process.stdout.write(
    `\nsoak: ${outcomes.length} runs (${perFault}), ${sum('kills')} kill -9s, ${keyCount} keys each, ${((Date.now() - started) / 1000).toFixed(0)} s\n` +
      `lost ${sum('lost')}, stale ${sum('stale')}, misplaced ${sum('misplaced')}, invalid pool files ${sum('invalidPoolFiles')}\n`,
  )
  process.exitCode = sum('lost') + sum('stale') + sum('misplaced') + sum('invalidPoolFiles') > 0 ? 1 : 0
}

await main()
