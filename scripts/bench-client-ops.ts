/**
 * PoolClient against the memjs client it wraps: get and set throughput with many concurrent
 * callers, on the same 3 local memcached servers, in one run (rounds alternate the clients, so
 * the machine's load hits both alike; the ratio is taken within each round).
 *
 *   node --import tsx scripts/bench-client-ops.ts [--callers 200] [--ops 100000] [--rounds 3] [--value-size 100]
 *
 * Clients: memjs (`Client.create` over the 3 servers), PoolClient replicas 1 and replicas 2
 * (php-memcached-libketama, no server in transition). Each round: every client does `--ops`
 * sets, then `--ops` gets of the keys it set (all hits), spread over `--callers` concurrent
 * async callers. Prints ops/s per client and the ratio PoolClient / memjs (median over rounds), and
 * the client process's CPU per operation (less skewed by other load on the machine than the rate).
 * PoolClient comes from dist/ (what applications run; `npm run build` first): tsx's transform of
 * src/ adds per-call work of its own. Every server started here is killed by PID at the end.
 */
import { parseArgs } from 'node:util'
import memjs from 'memjs'
import { existsSync } from 'node:fs'
import { startMemcached, type MemcachedServer } from '../test/helpers/memcached.js'

const { values: argv } = parseArgs({
  options: {
    callers: { type: 'string', default: '200' },
    ops: { type: 'string', default: '100000' },
    rounds: { type: 'string', default: '3' },
    'value-size': { type: 'string', default: '100' },
    threads: { type: 'string', default: '1' },
  },
  strict: true,
})
const callers = Number(argv.callers)
const ops = Number(argv.ops)
const rounds = Number(argv.rounds)
const value = Buffer.alloc(Number(argv['value-size']), 0x78)

interface Ops {
  get(key: string): Promise<unknown>
  set(key: string, value: Buffer): Promise<unknown>
  close(): Promise<void> | void
}

/**
 * ops/s of `n` calls of `op` spread over `callers` concurrent callers, and this process's CPU
 * (user + sys) per call in µs: the client's own cost, which other load on the machine skews far
 * less than the rate (the rate also waits for memcached and for the CPU).
 */
async function drive(n: number, op: (i: number) => Promise<unknown>): Promise<{ rate: number; cpuUs: number }> {
  let next = 0
  const cpu0 = process.cpuUsage()
  const started = performance.now()
  await Promise.all(
    Array.from({ length: callers }, async () => {
      for (let i = next++; i < n; i = next++) await op(i)
    }),
  )
  const cpu = process.cpuUsage(cpu0)
  return { rate: n / ((performance.now() - started) / 1000), cpuUs: (cpu.user + cpu.system) / n }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]!
}

async function main(): Promise<void> {
  const dist = new URL('../dist/', import.meta.url)
  if (!existsSync(new URL('core/client/index.js', dist))) throw new Error('dist/ is missing: npm run build')
  const { PoolClient } = (await import(new URL('core/client/index.js', dist).href)) as typeof import('../src/core/client/index.js')
  const { validatePool } = (await import(new URL('core/pool/validate.js', dist).href)) as typeof import('../src/core/pool/validate.js')
  const servers: MemcachedServer[] = await Promise.all([0, 1, 2].map(() => startMemcached({ threads: Number(argv.threads), memoryMb: 256 })))
  const addresses = servers.map((s) => s.address)
  try {
    const clients: Record<string, () => Ops> = {
      memjs: () => {
        const c = memjs.Client.create(addresses.join(','), { timeout: 2, retries: 0, logger: { log: () => undefined } })
        return { get: (k) => c.get(k), set: (k, v) => c.set(k, v, { expires: 0 }), close: () => c.close() }
      },
      'PoolClient r1': () => {
        const c = new PoolClient(validatePool({ hash: 'php-memcached-libketama', replicas: 1, servers: addresses }, 'bench'), { timeout: 2 })
        return { get: (k) => c.get(k), set: (k, v) => c.set(k, v), close: () => c.close() }
      },
      'PoolClient r2': () => {
        const c = new PoolClient(validatePool({ hash: 'php-memcached-libketama', replicas: 2, servers: addresses }, 'bench'), { timeout: 2 })
        return { get: (k) => c.get(k), set: (k, v) => c.set(k, v), close: () => c.close() }
      },
    }
    const results: Record<string, { set: number[]; get: number[]; setCpu: number[]; getCpu: number[] }> = {}
    const ratios: Record<string, { set: number[]; get: number[] }> = {}
    for (let round = 1; round <= rounds; round++) {
      const thisRound: Record<string, { set: number; get: number }> = {}
      for (const [name, make] of Object.entries(clients)) {
        const c = make()
        try {
          // Connections up first (not measured).
          await drive(callers, (i) => c.set(`warm:${i}`, value))
          const keyOf = (i: number): string => `${name === 'memjs' ? 'm' : name.slice(-2)}:${round}:${i}`
          const set = await drive(ops, (i) => c.set(keyOf(i), value))
          const get = await drive(ops, async (i) => {
            const got = await c.get(keyOf(i))
            // memjs answers { value, flags }, PoolClient the value: a miss is null / undefined.
            const v = got !== null && typeof got === 'object' && 'value' in got ? got.value : got
            if (v === undefined || v === null) throw new Error(`${name}: ${keyOf(i)} missing`)
          })
          thisRound[name] = { set: set.rate, get: get.rate }
          const r = (results[name] ??= { set: [], get: [], setCpu: [], getCpu: [] })
          r.set.push(set.rate)
          r.get.push(get.rate)
          r.setCpu.push(set.cpuUs)
          r.getCpu.push(get.cpuUs)
        } finally {
          await c.close()
        }
      }
      const base = thisRound.memjs!
      for (const name of Object.keys(clients)) {
        if (name === 'memjs') continue
        const r = thisRound[name]!
        ;(ratios[name] ??= { set: [], get: [] }).set.push(r.set / base.set)
        ratios[name].get.push(r.get / base.get)
      }
      process.stderr.write(`round ${round}: ${Object.entries(thisRound).map(([n, r]) => `${n} set ${Math.round(r.set)} get ${Math.round(r.get)}`).join(' | ')}\n`)
    }
    process.stdout.write(`\nPoolClient vs memjs — 3 memcached (-t ${argv.threads}), ${callers} concurrent callers, ${ops} ops each way, value ${value.length} B, median of ${rounds} rounds\n\n`)
    process.stdout.write('| client | set ops/s | get ops/s | set ratio | get ratio | set node CPU µs/op | get node CPU µs/op |\n|---|---|---|---|---|---|---|\n')
    for (const [name, r] of Object.entries(results)) {
      const q = ratios[name]
      process.stdout.write(
        `| ${name} | ${Math.round(median(r.set))} | ${Math.round(median(r.get))} | ${q === undefined ? '1' : median(q.set).toFixed(2)} | ${q === undefined ? '1' : median(q.get).toFixed(2)} | ${median(r.setCpu).toFixed(1)} | ${median(r.getCpu).toFixed(1)} |\n`,
      )
    }
    const r1 = ratios['PoolClient r1']!
    process.stdout.write(`\ntarget PoolClient r1 ≥ 0.9 × memjs: set ${median(r1.set) >= 0.9 ? 'met' : 'MISSED'} (${median(r1.set).toFixed(2)}), get ${median(r1.get) >= 0.9 ? 'met' : 'MISSED'} (${median(r1.get).toFixed(2)})\n`)
  } finally {
    await Promise.all(servers.map((s) => s.kill()))
  }
}

await main()
