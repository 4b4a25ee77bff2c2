/**
 * Added latency of PoolClient's read-through fallback (a miss at a key's new owner, then a read
 * at its old, deactivating owner) versus a plain hit, on local memcached servers.
 *
 *   node --import tsx scripts/bench-client.ts [samples]
 *
 * Each figure is the time from calling get() to its answer, one request at a time (no
 * concurrency), in microseconds. The move itself (add at the new owner, CAS delete at the old)
 * runs after the answer; it is timed separately ("answer + move").
 */
import { performance } from 'node:perf_hooks'
import { PoolClient } from '../src/core/client/index.js'
import { validatePool } from '../src/core/pool/validate.js'
import { rawCommand, startMemcached, type MemcachedServer } from '../test/helpers/memcached.js'

const SAMPLES = Number(process.argv[2] ?? 3000)
const WARMUP = 300

function summary(name: string, us: number[]): string {
  const s = [...us].sort((a, b) => a - b)
  const at = (q: number): number => s[Math.min(s.length - 1, Math.floor(q * s.length))]!
  const mean = s.reduce((a, b) => a + b, 0) / s.length
  return `${name.padEnd(44)} n=${String(s.length).padStart(5)}  mean ${mean.toFixed(0).padStart(5)}  p50 ${at(0.5).toFixed(0).padStart(5)}  p90 ${at(0.9).toFixed(0).padStart(5)}  p99 ${at(0.99).toFixed(0).padStart(5)} µs`
}

async function seed(address: string, keys: readonly string[]): Promise<void> {
  for (let i = 0; i < keys.length; i += 500) {
    const text = keys.slice(i, i + 500).map((k) => `ms ${k} 100 T0 q\r\n${'x'.repeat(100)}\r\n`).join('') + 'mn\r\n'
    const reply = await rawCommand(address, text)
    if (reply !== 'MN\r\n') throw new Error(`seeding ${address}: ${reply.slice(0, 80)}`)
  }
}

async function time(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now()
  await fn()
  return (performance.now() - t0) * 1000
}

async function main(): Promise<void> {
  const servers: MemcachedServer[] = await Promise.all([0, 1, 2].map(() => startMemcached()))
  const [a, b, c] = servers as [MemcachedServer, MemcachedServer, MemcachedServer]
  try {
    const hash = 'php-memcached-libketama'
    const draining = validatePool(
      { hash, servers: [{ address: a.address }, { address: b.address }, { address: c.address, state: 'deactivating' }] },
      'bench',
    )
    const client = new PoolClient(draining, { timeout: 2 })
    const replicated = new PoolClient(validatePool({ hash, replicas: 2, servers: [a.address, b.address] }, 'bench'), { timeout: 2, readRepair: false })

    // Keys by role: on their (unchanged) owner, moving off the deactivating server, and absent.
    const staying: string[] = []
    const moving: string[] = []
    for (let i = 0; moving.length < SAMPLES * 2 + WARMUP || staying.length < SAMPLES; i++) {
      const k = `bench:${i}`
      const where = client.locate(k)
      if (where.oldSources.length > 0) moving.push(k)
      else staying.push(k)
    }
    await Promise.all(staying.map((k) => client.set(k, 'x'.repeat(100))))
    await seed(c.address, moving)
    const secondLink = staying.filter((k) => replicated.locate(k).chain.length === 2).slice(0, SAMPLES)
    // For the replicated case: the value only on the second link, so the first misses.
    await Promise.all(secondLink.map((k) => rawCommand(replicated.locate(k).chain[0]!, `md ${k} q\r\nmn\r\n`)))

    for (const k of staying.slice(0, WARMUP)) await client.get(k)
    for (const k of moving.slice(0, WARMUP)) await client.get(k)
    await client.settle()

    const hit: number[] = []
    const miss: number[] = []
    const missDraining: number[] = []
    const fallback: number[] = []
    const fallbackMoved: number[] = []
    const chainMiss: number[] = []
    const plainClient = new PoolClient(validatePool({ hash, servers: [a.address, b.address] }, 'bench'), { timeout: 2 })
    for (const k of staying.slice(0, WARMUP)) await plainClient.get(`absent:${k}`)

    const fresh = moving.slice(WARMUP)
    // Absent keys whose owner changed: a miss reads at the new owner, then at the old one.
    const absentMoving: string[] = []
    for (let i = 0; absentMoving.length < SAMPLES; i++) if (client.locate(`absent:${i}`).oldSources.length > 0) absentMoving.push(`absent:${i}`)
    for (let i = 0; i < SAMPLES; i++) {
      // Interleaved so that each kind sees the same machine state.
      hit.push(await time(() => client.get(staying[i]!)))
      miss.push(await time(() => plainClient.get(`absent:${i}`)))
      missDraining.push(await time(() => client.get(absentMoving[i]!)))
      fallback.push(await time(() => client.get(fresh[2 * i]!)))
      await client.settle()
      fallbackMoved.push(
        await time(async () => {
          await client.get(fresh[2 * i + 1]!)
          await client.settle()
        }),
      )
      if (i < secondLink.length) chainMiss.push(await time(() => replicated.get(secondLink[i]!)))
    }

    const stats = client.stats()
    console.log(`memdrain PoolClient latency, ${SAMPLES} samples each, memcached on loopback, node ${process.version}`)
    console.log(summary('hit at the owner', hit))
    console.log(summary('miss (no server deactivating)', miss))
    console.log(summary('miss of a moving key (new owner, then old)', missDraining))
    console.log(summary('fallback hit at the old owner (answer)', fallback))
    console.log(summary('fallback hit, answer + move (add, CAS md)', fallbackMoved))
    console.log(summary('replicas 2: miss at link 1, hit at link 2', chainMiss))
    const p50 = (xs: number[]): number => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!
    console.log(
      `added by the fallback (p50): ${(p50(fallback) - p50(hit)).toFixed(0)} µs over a hit; ` +
        `answer + move: ${(p50(fallbackMoved) - p50(hit)).toFixed(0)} µs over a hit`,
    )
    console.log(`moved ${stats.migrated} keys, conflicts ${stats.migrationConflicts}, failures ${stats.migrationFailures}`)
    await Promise.all([client.close(), replicated.close(), plainClient.close()])
  } finally {
    await Promise.all(servers.map((s) => s.stop()))
  }
}

await main()
