/**
 * A move hand-off drain while an application workload runs through PoolClient (seed 000): the
 * drain marks the server deactivating, the client switches within its check interval and reads
 * through to the old owner (moving what it reads), and the drain moves the rest. Every read is
 * checked for staleness; the hit ratio on the drained server's keys is measured while the drain
 * runs, and the keys the client moved reach the drain's ratio through its report.
 */
import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import { PoolClient, sumClientMigrations } from '../../src/core/client/index.js'
import { runDrain, transitionedRatio } from '../../src/core/jobs/drain.js'
import { connect, drainOptions, getAll, startPool, type TestPool } from './drain.fixtures.js'
import { hitRatio, parseVersioned, seedVersioned, startWorkload, worstWindow } from '../helpers/client-workload.js'

describe('drain --handoff move with a PoolClient workload in front', () => {
  const pools: TestPool[] = []
  const clients: PoolClient[] = []
  after(async () => {
    await Promise.all(clients.map((c) => c.close()))
    await Promise.all(pools.map((p) => p.stop()))
  })

  it('never reads a stale value, keeps the drained keys hitting, and counts the keys the client moved', async () => {
    const pool = await startPool(4, { hash: 'php-memcached-libketama', clients: 'pool-aware' })
    pools.push(pool)
    const src = pool.servers[0]!.address
    const client = await PoolClient.fromPoolFile(pool.file, { checkInterval: 0.5, reportInterval: 0.5, timeout: 2 })
    clients.push(client)
    const keys = Array.from({ length: 20000 }, (_, i) => `wl:${i}`)
    const tracked = new Set(keys.filter((k) => client.locate(k).chain[0] === src))
    assert.ok(tracked.size > 500, `the drained server owns ${tracked.size} of the keys`)
    await seedVersioned(client, keys, 100)

    const workload = startWorkload({ client, keys, tracked, concurrency: 16, opsPerSecond: 3000, writeShare: 0.2, valueBytes: 100, windowMs: 1000 })
    await sleep(500)
    workload.measure(true)
    // Throttled so that the workload meets keys in every state: before the client switched (grace),
    // moved by the client, moved by the drain, and not moved yet.
    const result = await runDrain(drainOptions(pool, src, { handoff: 'move', rate: 1500, clientGraceSeconds: 1.5, minFree: 0 }))
    workload.measure(false)
    await sleep(300)
    const report = await workload.stop()
    await client.settle()
    await client.flushReport()

    const ratio = hitRatio(report.tracked)
    const worst = worstWindow(report.windows)
    console.log(
      `drain of ${tracked.size} keys under load: ${report.tracked.reads} reads of them during the drain, hit ratio ${(ratio * 100).toFixed(2)}%` +
        (worst === undefined ? '' : `, worst 1 s window ${(worst.ratio * 100).toFixed(2)}% of ${worst.reads}`) +
        `; ${report.reads} reads and ${report.writes} writes in all; drain moved ${result.moved}, in place ${result.inPlace}, ` +
        `moved by clients ${result.movedByClients}, gone ${result.skipped.gone ?? 0}, conflicts ${result.conflicts}, ${result.durationSeconds.toFixed(1)} s`,
    )

    assert.equal(report.errors, 0, report.errorSamples.join('\n'))
    assert.equal(report.foreign, 0, report.staleSamples.join('\n'))
    assert.equal(report.stale, 0, report.staleSamples.join('\n'))
    assert.ok(report.tracked.reads >= 200, `only ${report.tracked.reads} reads of the drained keys during the drain`)
    assert.ok(ratio >= 0.9, `hit ratio on the drained server's keys during the drain: ${ratio}`)

    assert.equal(result.status, 0, JSON.stringify(result))
    assert.equal(result.state, 'removed')
    assert.equal(result.purged, true)
    assert.equal(pool.server(src).state, 'removed')
    const stats = client.stats()
    assert.ok(stats.migrated + stats.migratedByWrites > 0, 'the client moved keys while the drain ran')
    assert.ok(stats.fallbackHits > 0)
    // The drain counted the client's moves from its report, which keeps counting after the drain's last look.
    const reported = (await sumClientMigrations(pool.file)).get(src) ?? 0
    assert.equal(reported, stats.migrated + stats.migratedByWrites)
    assert.ok(result.movedByClients > 0 && result.movedByClients <= reported, `movedByClients ${result.movedByClients}, reported ${reported}`)
    const record = pool.server(src).transition!
    assert.equal(record.movedByClients, result.movedByClients)
    assert.equal(transitionedRatio(record), result.ratio)

    // After the drain: every key reads back its last acknowledged version from its new owner.
    let lost = 0
    let wrong = 0
    for (let i = 0; i < keys.length; i += 500) {
      const batch = keys.slice(i, i + 500)
      const values = await Promise.all(batch.map((k) => client.get(k)))
      values.forEach((v, j) => {
        if (v === undefined) lost++
        else if (parseVersioned(v.toString())?.version !== report.acked.get(batch[j]!)) wrong++
      })
    }
    assert.equal(wrong, 0, 'a key holds another version than its last acknowledged write')
    // A key is lost only in the race where a client moves it while the drain's copy is in flight
    // (the drain then withdraws its copy, which may be the client's); allow a handful.
    assert.ok(lost <= keys.length * 0.005, `${lost} keys lost`)
    const sc = await connect(src)
    assert.equal((await getAll(sc, keys.map((k) => Buffer.from(k)))).size, 0, 'the drained server is flushed')
    await sc.close()
  })
})
