/**
 * Hit ratio of a drained server's keys while a move hand-off drain runs with PoolClient in front
 * of an application workload, and the added latency of the client's read-through fallback.
 *
 *   node --import tsx scripts/bench-client-drain.ts [--keys 100000] [--servers 4] [--ops 4000]
 *       [--concurrency 32] [--write-share 0.1] [--rate 20000] [--grace 3] [--value-size 100]
 *       [--no-migrate] [--latency-samples 2000]
 *
 * Starts `servers` memcached servers on loopback, writes a pool file (php-memcached-libketama,
 * pool-aware clients), seeds `keys` versioned values through PoolClient, then runs a paced
 * workload (`ops` operations/s, `write-share` of them sets, uniform over the keys) through one
 * PoolClient that watches the pool file (default options: checked every 2 s), and drains the
 * first server with the CLI in a child process (`bin/dev.js drain --handoff move`, from the
 * sources, so no build is needed). Reported: the hit ratio of reads of the drained server's keys
 * from the drain's start to its end, overall and per 1-second window (the worst one), before the
 * drain for reference, stale reads (must be 0), and what the drain and the client moved.
 * `--no-migrate` runs the same with the client's lazy migration off, for contrast.
 * Then runs scripts/bench-client.ts (`latency-samples` each) for the fallback latency.
 *
 * Every server started here is stopped by PID at the end.
 */
import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
import { PoolClient } from '../src/core/client/index.js'
import { startMemcached, type MemcachedServer } from '../test/helpers/memcached.js'
import { hitRatio, seedVersioned, startWorkload, worstWindow } from '../test/helpers/client-workload.js'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const { values: args } = parseArgs({
  options: {
    keys: { type: 'string', default: '100000' },
    servers: { type: 'string', default: '4' },
    ops: { type: 'string', default: '4000' },
    concurrency: { type: 'string', default: '32' },
    'write-share': { type: 'string', default: '0.1' },
    rate: { type: 'string', default: '20000' },
    grace: { type: 'string', default: '3' },
    'value-size': { type: 'string', default: '100' },
    'no-migrate': { type: 'boolean', default: false },
    'latency-samples': { type: 'string', default: '2000' },
  },
})
const KEYS = Number(args.keys)
const SERVERS = Number(args.servers)
const VALUE = Number(args['value-size'])

const pct = (x: number): string => `${(x * 100).toFixed(2)}%`

interface DrainRun {
  code: number
  result: Record<string, unknown> | undefined
  stderr: string
}

function drainInChild(server: string, poolFile: string, spoolDir: string): Promise<DrainRun> {
  const cli = [
    '--import', 'tsx', '--no-warnings', path.join(ROOT, 'bin/dev.js'),
    'drain', server, '--pool', poolFile, '--handoff', 'move', '--yes', '--json',
    '--rate', args.rate, '--bandwidth', '0', '--min-free', '0', '--client-grace', args.grace, '--spool-dir', spoolDir,
  ]
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, cli, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    child.on('error', reject)
    child.on('close', (code) => {
      let result: Record<string, unknown> | undefined
      try {
        result = (JSON.parse(stdout) as { result?: Record<string, unknown> }).result
      } catch {
        result = undefined
      }
      resolve({ code: code ?? -1, result, stderr })
    })
  })
}

async function main(): Promise<void> {
  const servers: MemcachedServer[] = await Promise.all(Array.from({ length: SERVERS }, () => startMemcached({ memoryMb: 256 })))
  const dir = mkdtempSync(path.join(tmpdir(), 'memdrain-bench-client-drain-'))
  const poolFile = path.join(dir, 'memdrain.json')
  let client: PoolClient | undefined
  try {
    writeFileSync(poolFile, JSON.stringify({ hash: 'php-memcached-libketama', clients: 'pool-aware', servers: servers.map((s) => ({ address: s.address })) }, null, 2))
    const src = servers[0]!.address
    client = await PoolClient.fromPoolFile(poolFile, { timeout: 2, migrate: !args['no-migrate'] })
    const keys = Array.from({ length: KEYS }, (_, i) => `bench:${i}`)
    const tracked = new Set(keys.filter((k) => client!.locate(k).chain[0] === src))
    const seedStart = performance.now()
    await seedVersioned(client, keys, VALUE)
    console.log(`seeded ${KEYS} keys (${VALUE}-byte values) on ${SERVERS} servers in ${((performance.now() - seedStart) / 1000).toFixed(1)} s; ${tracked.size} on the drained server ${src}`)

    const workload = startWorkload({
      client,
      keys,
      tracked,
      concurrency: Number(args.concurrency),
      opsPerSecond: Number(args.ops),
      writeShare: Number(args['write-share']),
      valueBytes: VALUE,
      windowMs: 1000,
    })
    // Before the drain, for reference: the same reads against an unchanged pool.
    workload.measure(true)
    await sleep(2000)
    workload.measure(false)
    const before = workload.tracked()

    workload.measure(true)
    const drainStart = performance.now()
    const drain = await drainInChild(src, poolFile, path.join(dir, 'spool'))
    const drainSeconds = (performance.now() - drainStart) / 1000
    const report = await workload.stop()
    await client.settle()
    const during = report.tracked
    const worst = worstWindow(report.windows)
    const stats = client.stats()

    if (drain.result === undefined) throw new Error(`the drain failed (exit ${drain.code}):\n${drain.stderr}`)
    const r = drain.result
    console.log(
      `drain --handoff move --rate ${args.rate} --client-grace ${args.grace}: exit ${drain.code}, ${drainSeconds.toFixed(1)} s wall; ` +
        `keys at start ${String(r.keysAtStart)}, moved by the drain ${String(r.moved)}, in place ${String(r.inPlace)}, moved by clients ${String(r.movedByClients)}, ` +
        `gone ${String((r.skipped as Record<string, number>).gone ?? 0)}, conflicts ${String(r.conflicts)}, ratio ${pct(Number(r.ratio))}, state ${String(r.state)}`,
    )
    console.log(
      `workload: ${args.ops} ops/s target, ${args.concurrency} in flight, ${pct(Number(args['write-share']))} sets; ${report.reads} reads, ${report.writes} writes, ` +
        `${report.stale} stale, ${report.foreign} foreign, ${report.errors} errors${args['no-migrate'] ? ' (client migration OFF)' : ''}`,
    )
    console.log(`hit ratio of the drained server's keys before the drain: ${pct(hitRatio(before))} of ${before.reads} reads`)
    console.log(`hit ratio of the drained server's keys during the drain:  ${pct(hitRatio(during))} of ${during.reads} reads`)
    if (worst !== undefined) console.log(`worst 1-second window during the drain: ${pct(worst.ratio)} of ${worst.reads} reads (second ${worst.index + 1})`)
    console.log(`per second: ${report.windows.map((w) => (w.reads === 0 ? '-' : pct(hitRatio(w)))).join(' ')}`)
    console.log(`client: fallback reads ${stats.fallbackReads}, fallback hits ${stats.fallbackHits}, moved on read ${stats.migrated}, on write ${stats.migratedByWrites}, conflicts ${stats.migrationConflicts}`)
    if (report.stale > 0 || report.foreign > 0) console.log(`STALE READS:\n${report.staleSamples.join('\n')}`)
  } finally {
    await client?.close()
    await Promise.all(servers.map((s) => s.stop()))
    rmSync(dir, { recursive: true, force: true })
  }

  const samples = Number(args['latency-samples'])
  if (samples > 0) {
    console.log('')
    spawnSync(process.execPath, ['--import', 'tsx', '--no-warnings', path.join(ROOT, 'scripts/bench-client.ts'), String(samples)], { cwd: ROOT, stdio: 'inherit' })
  }
}

await main()
