import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { runCli } from '../helpers/cli.js'
import { parseExposition, type Exposition } from '../helpers/prom.js'
import { startMemcached } from '../helpers/memcached.js'
import { connect, keysOf, setAll, startPool, type TestPool } from './drain.fixtures.js'

/**
 * --metrics-file on real jobs (the built CLI against real memcached): the file is valid text
 * exposition while the job runs and after, written atomically, and its figures are the result's.
 */

async function load(address: string, prefix: string, n: number, size = 100): Promise<void> {
  const c = await connect(address)
  const keys = keysOf(prefix, n)
  const value = Buffer.alloc(size, 'v')
  for (let i = 0; i < keys.length; i += 5000) await setAll(c, keys.slice(i, i + 5000).map((key) => ({ key, value })))
  await c.close()
}

describe('--metrics-file (Prometheus text exposition)', () => {
  const pools: TestPool[] = []
  after(async () => {
    await Promise.all(pools.map((p) => p.stop()))
  })

  it('drain: readable while the drain moves keys (counters only grow), and equal to the result at the end', async () => {
    const pool = await startPool(3, { clients: 'pool-aware' }) // the move hand-off is for pool-aware clients
    pools.push(pool)
    const src = pool.servers[0]!.address
    await load(src, 'm', 20_000)
    const file = path.join(pool.dir, 'memdrain.prom')
    const run = runCli(['drain', src, '--pool', pool.file, '--json', '--yes', '--handoff', 'move', '--client-grace', '0', '--rate', '5000', '--metrics-file', file, '--metrics-interval', '1', '--spool-dir', path.join(pool.dir, 'spool')])
    let finished = false
    void run.finally(() => (finished = true))
    const during: Exposition[] = []
    while (!finished) {
      if (existsSync(file)) during.push(parseExposition(readFileSync(file, 'utf8')))
      await sleep(400)
    }
    const r = await run
    assert.equal(r.code, 0, r.stderr)
    const result = r.json.result
    const end = parseExposition(readFileSync(file, 'utf8'))

    // During: at least one reading mid-move, and no counter ever went down between readings.
    const mid = during.filter((e) => e.value('memdrain_job_phase', { phase: 'move' }) === 1 && e.sum('memdrain_keys_handled') > 0 && e.sum('memdrain_keys_handled') < 20_000)
    assert.ok(mid.length >= 1, `no reading caught the move under way (${during.length} readings)`)
    for (const e of mid) {
      assert.equal(e.sum('memdrain_keys_planned'), 20_000)
      assert.equal(e.value('memdrain_throttle_rate'), 5000)
      assert.ok(e.value('memdrain_eta_seconds') > 0)
    }
    for (let i = 1; i < during.length; i++) {
      for (const s of during[i - 1]!.samples.filter((x) => x.name.endsWith('_total'))) {
        const now = during[i]!.find(s.name, s.labels)
        assert.equal(now.length, 1, `${s.name} ${JSON.stringify(s.labels)} disappeared`)
        assert.ok(now[0]!.value >= s.value, `${s.name} ${JSON.stringify(s.labels)} went from ${s.value} to ${now[0]!.value}`)
      }
    }

    // After: the result's figures.
    assert.equal(end.types.get('memdrain_keys_total'), 'counter')
    assert.equal(end.value('memdrain_job_phase', { phase: 'done' }), 1)
    assert.equal(end.sum('memdrain_job_phase'), 1)
    assert.equal(end.sum('memdrain_keys_total', { job: 'drain', source: src, outcome: 'moved' }), result.moved)
    assert.equal(end.sum('memdrain_keys_total', { outcome: 'in_place' }), result.inPlace)
    assert.equal(end.sum('memdrain_keys_total', { outcome: 'failed' }), 0)
    // A modulo pool (memjs) has every server as a source: the counters are per source, summed here.
    assert.equal(end.sum('memdrain_keys_total', { outcome: 'skipped' }), Object.values(result.skipped as Record<string, number>).reduce((a, b) => a + b, 0))
    assert.equal(end.sum('memdrain_bytes_total'), result.bytes)
    for (const d of result.destinations as { address: string; keys: number; bytes: number }[]) {
      assert.equal(end.sum('memdrain_keys_total', { destination: d.address, outcome: 'moved' }), d.keys)
      assert.equal(end.sum('memdrain_bytes_total', { destination: d.address }), d.bytes)
      assert.ok(end.value('memdrain_destination_free_bytes', { server: d.address }) > 0)
    }
    for (const p of result.preflight as { address: string; keys: number }[]) {
      assert.equal(end.value('memdrain_keys_planned', { destination: p.address }), p.keys)
      assert.equal(end.value('memdrain_keys_handled', { destination: p.address }), p.keys)
    }
    assert.equal(end.value('memdrain_transitioned_ratio', { server: src }), result.ratio)
    // Readable by node_exporter's own user, and no temporary file left beside it.
    assert.equal(statSync(file).mode & 0o044, 0o044)
    assert.deepEqual(readdirSync(pool.dir).filter((f) => f.includes('.prom.')), [])
  })

  it('rebalance: every source in one file, keys per destination as planned', async () => {
    const pool = await startPool(2, { clients: 'pool-aware' })
    pools.push(pool)
    const extra = await startMemcached()
    after(() => extra.stop())
    await load(pool.servers[0]!.address, 'r0', 3000)
    await load(pool.servers[1]!.address, 'r1', 3000)
    const file = path.join(pool.dir, 'rebalance.prom')
    const r = await runCli(['rebalance', '--pool', pool.file, '--add', extra.address, '--json', '--yes', '--handoff', 'move', '--client-grace', '0', '--rate', '0', '--metrics-file', file, '--spool-dir', path.join(pool.dir, 'spool')])
    assert.equal(r.code, 0, r.stderr)
    const result = r.json.result
    const end = parseExposition(readFileSync(file, 'utf8'))
    assert.equal(end.value('memdrain_job_phase', { job: 'rebalance', phase: 'done' }), 1)
    assert.equal(end.sum('memdrain_keys_total', { outcome: 'moved' }), result.moved)
    assert.ok(result.moved > 0)
    for (const d of result.plan.destinations as { address: string; keys: number }[]) {
      if (d.keys > 0) assert.equal(end.value('memdrain_keys_planned', { destination: d.address }), d.keys)
    }
    for (const s of result.sources as { address: string; moved: number; ratio: number }[]) {
      assert.equal(end.sum('memdrain_keys_total', { source: s.address, outcome: 'moved' }), s.moved)
      assert.equal(end.value('memdrain_transitioned_ratio', { server: s.address }), s.ratio)
    }
  })

  it('mirror --once: keys copied and the lag', async () => {
    const active = await startMemcached()
    const passive = await startMemcached()
    after(() => Promise.all([active.stop(), passive.stop()]))
    await load(active.address, 'mi', 2000)
    const pool = await startPool(1)
    pools.push(pool)
    const file = path.join(pool.dir, 'mirror.prom')
    const r = await runCli(['mirror', active.address, passive.address, '--once', '--json', '--yes', '--rate', '0', '--metrics-file', file], { cwd: pool.dir })
    assert.equal(r.code, 0, r.stderr)
    const end = parseExposition(readFileSync(file, 'utf8'))
    assert.equal(end.value('memdrain_keys_total', { job: 'mirror', source: active.address, destination: passive.address, outcome: 'moved' }), r.json.result.copied)
    assert.equal(end.value('memdrain_lag_seconds'), r.json.result.last.lagMs / 1000)
    assert.equal(end.value('memdrain_mirror_passes_total'), 1)
  })

  it('a metrics file that cannot be written is refused before the job starts (exit 2)', async () => {
    const pool = await startPool(2)
    pools.push(pool)
    const r = await runCli(['drain', pool.servers[0]!.address, '--pool', pool.file, '--json', '--yes', '--metrics-file', '/nonexistent-dir/x.prom'])
    assert.equal(r.code, 2, r.stderr)
    assert.match(r.json.error.message, /cannot write the metrics file/)
    assert.equal(pool.server(pool.servers[0]!.address).state, 'active')
  })
})
