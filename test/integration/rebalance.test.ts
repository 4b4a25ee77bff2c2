import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { abortRebalance, runRebalance } from '../../src/core/jobs/rebalance.js'
import { runDrain } from '../../src/core/jobs/drain.js'
import { purgeServer } from '../../src/core/pool/purge.js'
import { startMemcached, type MemcachedServer } from '../helpers/memcached.js'
import { rejectsWithCode } from '../helpers/assert.js'
import { Conns, drainOptions, getAll, setAll, startPool, type TestPool } from './drain.fixtures.js'
import { locateKey, poolPlacement } from '../../src/core/pool/placement.js'
import { assertPlaced, changedOwners, getHits, readPool, rebalanceOptions, seed } from './rebalance.fixtures.js'

/** rebalance with real memcached: 3→4 and 4→3, consistent and modulo, both hand-offs. */

describe('rebalance', () => {
  const pools: TestPool[] = []
  const spares: MemcachedServer[] = []
  const conns = new Conns()
  after(async () => {
    await conns.close()
    await Promise.all([...pools.map((p) => p.stop()), ...spares.map((s) => s.kill())])
  })
  const spare = async (): Promise<string> => {
    const s = await startMemcached()
    spares.push(s)
    return s.address
  }

  for (const hash of ['memjs', 'php-memcached-libketama', 'php-memcached-default'] as const) {
    it(`3→4 under ${hash} (move hand-off): moves exactly the keys whose owner changes, reads no other`, async () => {
      const pool = await startPool(3, { hash, clients: 'pool-aware' })
      pools.push(pool)
      const old = pool.servers.map((s) => s.address)
      const added = await spare()
      const before = readPool(pool.file)
      const items = await seed(conns, before, 1500)
      const hits = await getHits(old)

      const r = await runRebalance(rebalanceOptions(pool, { add: [added] }))
      assert.equal(r.status, 0, JSON.stringify(r.samples))
      assert.equal(r.finished, true)
      assert.deepEqual(r.added, [added])
      const after = readPool(pool.file)
      assert.equal(after.rebalance, undefined, 'the record is gone once finished')
      assert.deepEqual(after.servers.map((s) => [s.address, s.state]), [...old, added].map((a) => [a, 'active']))

      const expected = changedOwners(before, after, items)
      const expectedTotal = [...expected.values()].reduce((a, b) => a + b, 0)
      assert.ok(expectedTotal > 0)
      assert.equal(r.moved, expectedTotal)
      assert.equal(r.plan.keysToMove, expectedTotal)
      assert.equal(r.plan.keysListed, items.length)
      assert.equal(r.plan.fraction, expectedTotal / items.length)
      // Keys that stay were not read: each source served exactly one mg per key it handed over.
      const hitsAfter = await getHits(old)
      for (const s of old) assert.equal(hitsAfter.get(s)! - hits.get(s)!, expected.get(s) ?? 0, `gets on ${s}`)
      for (const src of r.sources) assert.equal(src.moved, expected.get(src.address) ?? 0)
      await assertPlaced(conns, after, items, [...old, added])
    })
  }

  it('4→3 under php-memcached-libketama (move hand-off): the leaving server hands over everything, is purged and removed; the others only what changes owner', async () => {
    const pool = await startPool(4, { hash: 'php-memcached-libketama', clients: 'pool-aware' })
    pools.push(pool)
    const all = pool.servers.map((s) => s.address)
    const leaving = all[1]!
    const before = readPool(pool.file)
    const items = await seed(conns, before, 1200)
    const hits = await getHits(all)
    const r = await runRebalance(rebalanceOptions(pool, { remove: [leaving] }))
    assert.equal(r.status, 0, JSON.stringify(r.samples))
    assert.deepEqual(r.removed, [leaving])
    const after = readPool(pool.file)
    assert.equal(after.servers[1]!.state, 'removed')
    assert.equal(r.sources.find((s) => s.address === leaving)!.purged, true)
    const expected = changedOwners(before, after, items)
    const hitsAfter = await getHits(all)
    for (const s of all) assert.equal(hitsAfter.get(s)! - hits.get(s)!, expected.get(s) ?? 0, `gets on ${s}`)
    assert.equal(r.moved, [...expected.values()].reduce((a, b) => a + b, 0))
    await assertPlaced(conns, after, items, all.filter((a) => a !== leaving))
  })

  it('4→3 under a modulo strategy (copy hand-off): switch, catch-up, stale copies deleted from staying servers, leaving server purged', async () => {
    const pool = await startPool(4, { hash: 'php-memcached-default' })
    pools.push(pool)
    const all = pool.servers.map((s) => s.address)
    const leaving = all[2]!
    const before = readPool(pool.file)
    const items = await seed(conns, before, 1200)
    // A write to an old owner after its copy and before the switch: the catch-up carries it over.
    let switched = 0
    const next = { ...before, servers: before.servers.filter((s) => s.address !== leaving) }
    const changedKey = items.find((it) => changedOwners(before, next, [it]).size > 0)!
    let fresh = { key: Buffer.from('fresh-0'), value: Buffer.from('late') }
    for (let i = 1; ; i++) {
      const owner = locateKey(poolPlacement(before), fresh.key.toString()).server
      if (owner !== leaving && locateKey(poolPlacement(next), fresh.key.toString()).server !== owner) break
      fresh = { key: Buffer.from(`fresh-${i}`), value: Buffer.from('late') }
    }
    const freshOwner = locateKey(poolPlacement(before), fresh.key.toString()).server
    const r = await runRebalance(
      rebalanceOptions(pool, { remove: [leaving] }, {
        waitForSwitch: async (ctx) => {
          switched++
          assert.deepEqual(ctx.removed, [leaving])
          const p = readPool(pool.file)
          assert.equal(p.servers.find((s) => s.address === leaving)!.state, 'deactivating')
          assert.ok(p.rebalance !== undefined && p.rebalance.switchedAt === undefined)
          // Static clients still read and write the previous pool until now.
          const oldOwner = locateKey(poolPlacement(before), changedKey.key.toString()).server
          changedKey.value = Buffer.from('written before the switch')
          await setAll(await conns.get(oldOwner), [changedKey])
          // A key first written after the last copy pass, on a server that stays but will not own it.
          await setAll(await conns.get(freshOwner), [fresh])
        },
      }),
    )
    assert.equal(switched, 1)
    assert.equal(r.status, 0, JSON.stringify(r.samples))
    assert.equal(r.handoff, 'copy')
    assert.ok(r.caughtUp >= 1, 'the key written before the switch was re-copied')
    const after = readPool(pool.file)
    assert.equal(after.rebalance, undefined)
    assert.equal(after.servers.find((s) => s.address === leaving)!.state, 'removed')
    const moved = [...changedOwners(before, after, items).values()].reduce((a, b) => a + b, 0)
    assert.ok(moved > items.length / 2, 'modulo moves most keys')
    // Leaving server purged; staying servers hold only what they own (copies deleted).
    assert.equal((await getAll(await conns.get(leaving), items.map((i) => i.key))).size, 0)
    assert.ok(r.staleCopiesDeleted > 0)
    await assertPlaced(conns, after, items, all.filter((a) => a !== leaving))
    // Not copied after the switch (it could resurrect a delete at the new owner), and gone from
    // the server that no longer owns it (a rebalance back must not find it).
    for (const a of all.filter((x) => x !== leaving)) assert.equal((await getAll(await conns.get(a), [fresh.key])).size, 0, `${fresh.key} on ${a}`)
  })

  it('--dry-run plans from the dumps and writes nothing', async () => {
    const pool = await startPool(3, { hash: 'php-memcached-libketama', clients: 'pool-aware' })
    pools.push(pool)
    const added = await spare()
    const before = readPool(pool.file)
    const items = await seed(conns, before, 600)
    const text = readFileSync(pool.file, 'utf8')
    const r = await runRebalance(rebalanceOptions(pool, { add: [added] }, { dryRun: true, rate: 1000 }))
    assert.equal(r.status, 0)
    assert.equal(readFileSync(pool.file, 'utf8'), text, 'pool file untouched')
    const next = { ...before, servers: [...before.servers, { ...before.servers[0]!, address: added, host: '127.0.0.1', port: Number(added.split(':')[1]) }] }
    const expected = [...changedOwners(before, next, items).values()].reduce((a, b) => a + b, 0)
    assert.equal(r.plan.keysToMove, expected)
    assert.equal(r.plan.pairs.reduce((n, p) => n + p.keys, 0), expected)
    assert.ok(r.plan.pairs.every((p) => p.to === added), 'adding a server only moves keys to it')
    assert.equal(r.plan.estimatedSeconds, expected / 1000)
    assert.ok(Math.abs(r.plan.estimatedFraction! - r.plan.fraction) < 0.12, `estimate ${r.plan.estimatedFraction} vs ${r.plan.fraction}`)
    assert.ok(r.plan.destinations.every((d) => d.fits && d.itemsFit))
    assert.equal(r.moved, 0)
    await assertPlaced(conns, before, items, pool.servers.map((s) => s.address))
    assert.equal((await getAll(await conns.get(added), items.map((i) => i.key))).size, 0)
  })

  it('--abort before the switch deletes the copies and restores the previous pool; refused after it', async () => {
    const pool = await startPool(3, { hash: 'memjs' })
    pools.push(pool)
    const added = await spare()
    const before = readPool(pool.file)
    const text = readFileSync(pool.file, 'utf8')
    const items = await seed(conns, before, 800)
    // The switch never comes (the operator stops memdrain while it waits).
    await assert.rejects(runRebalance(rebalanceOptions(pool, { add: [added] }, { waitForSwitch: () => Promise.reject(new Error('no switch')) })), /no switch/)
    const mid = readPool(pool.file)
    assert.ok(mid.rebalance !== undefined, 'the record stays')
    assert.ok((await getAll(await conns.get(added), items.map((i) => i.key))).size > 0, 'copies were made')
    const a = await abortRebalance(pool.store, path.join(pool.dir, 'spool'))
    assert.equal(a.restored, true)
    assert.ok(a.copiesDeleted > 0)
    assert.deepEqual(readPool(pool.file), parseSame(text, pool.file))
    assert.equal((await getAll(await conns.get(added), items.map((i) => i.key))).size, 0, 'no copy left on the added server')
    await assertPlaced(conns, before, items, pool.servers.map((s) => s.address))
    await rejectsWithCode(abortRebalance(pool.store, undefined), 'NO_REBALANCE', 3)
  })

  it('refusals: no edits, unknown server, drain in progress, a different rebalance in progress, abort of a move', async () => {
    const pool = await startPool(3, { hash: 'memjs', clients: 'pool-aware' })
    pools.push(pool)
    const [a, b] = pool.servers.map((s) => s.address) as [string, string, string]
    await rejectsWithCode(runRebalance(rebalanceOptions(pool, {})), 'USAGE', 2)
    await rejectsWithCode(runRebalance(rebalanceOptions(pool, { remove: ['127.0.0.1:1'] })), 'USAGE', 2)
    await rejectsWithCode(runRebalance(rebalanceOptions(pool, { add: [a] })), 'USAGE', 2)
    await rejectsWithCode(runRebalance(rebalanceOptions(pool, { weight: [`${a}=1`] })), 'NOTHING_TO_MOVE', 2)
    // More copies per key: sources keep what they hold and would never copy it to the new members.
    const current = readPool(pool.file)
    await rejectsWithCode(runRebalance(rebalanceOptions(pool, { to: { pool: { ...current, replicas: 2 }, location: 'more-copies.json' } })), 'REPLICAS_RAISED', 2)
    const { freePort } = await import('../helpers/memcached.js')
    await rejectsWithCode(runRebalance(rebalanceOptions(pool, { add: [`127.0.0.1:${await freePort()}`] })), 'SERVER_UNREACHABLE', 3)
    assert.equal(readPool(pool.file).rebalance, undefined, 'a refused rebalance leaves the pool as it was')
    // A record of a rebalance in progress (move hand-off) towards another pool.
    const p = readPool(pool.file)
    const doc = JSON.parse(readFileSync(pool.file, 'utf8'))
    doc.servers[1].state = 'deactivating'
    doc.rebalance = { startedAt: new Date().toISOString(), handoff: 'move', threshold: 0.95, previous: JSON.parse(readFileSync(pool.file, 'utf8')), sources: {} }
    writeFileSync(pool.file, JSON.stringify(doc))
    assert.equal(p.servers.length, 3)
    await rejectsWithCode(runRebalance(rebalanceOptions(pool, { remove: [a] })), 'REBALANCE_IN_PROGRESS', 3)
    await rejectsWithCode(runDrain(drainOptions(pool, a)), 'REBALANCE_IN_PROGRESS', 3)
    await rejectsWithCode(purgeServer(pool.store, b, false), 'PURGE_REFUSED', 3)
    await rejectsWithCode(abortRebalance(pool.store, undefined), 'ABORT_REFUSED', 3)
    // The same command resumes it.
    const r = await runRebalance(rebalanceOptions(pool, { remove: [b] }))
    assert.equal(r.status, 0)
    assert.equal(r.resumed, true)
    assert.equal(readPool(pool.file).servers[1]!.state, 'removed')
  })

  it('interrupted (exit 69) keeps the record; the same command resumes to the same end state', async () => {
    const pool = await startPool(3, { hash: 'php-memcached-libketama', clients: 'pool-aware' })
    pools.push(pool)
    const old = pool.servers.map((s) => s.address)
    const added = await spare()
    const before = readPool(pool.file)
    const items = await seed(conns, before, 3000)
    const ac = new AbortController()
    const r1 = await runRebalance(
      rebalanceOptions(pool, { add: [added] }, {
        rate: 300,
        batchSize: 50,
        inFlight: 1,
        signal: ac.signal,
        onEvent: (e) => {
          if (e.type === 'progress' && e.tally.moved > 50) ac.abort()
        },
      }),
    )
    assert.equal(r1.status, 69)
    assert.equal(r1.interrupted, true)
    const mid = readPool(pool.file)
    assert.ok(mid.rebalance !== undefined)
    const movedFirst = Object.values(mid.rebalance.sources).reduce((n, s) => n + s.moved, 0)
    assert.ok(movedFirst > 0)
    const r2 = await runRebalance(rebalanceOptions(pool, { add: [added] }))
    assert.equal(r2.status, 0, JSON.stringify(r2.samples))
    assert.equal(r2.resumed, true)
    const after = readPool(pool.file)
    assert.equal(after.rebalance, undefined)
    const expected = [...changedOwners(before, after, items).values()].reduce((a, b) => a + b, 0)
    assert.equal(r2.moved, expected, 'moved over both runs')
    await assertPlaced(conns, after, items, [...old, added])
  })

  it('drain with replicas 2 puts each key on every member of its new chain', async () => {
    const pool = await startPool(4, { hash: 'php-memcached-libketama', replicas: 2, clients: 'pool-aware' })
    pools.push(pool)
    const all = pool.servers.map((s) => s.address)
    const src = all[0]!
    const before = readPool(pool.file)
    const items = await seed(conns, before, 800)
    const r = await runDrain(drainOptions(pool, src))
    assert.equal(r.status, 0, JSON.stringify(r.samples))
    const after = readPool(pool.file)
    assert.equal(after.servers[0]!.state, 'removed')
    // Keys the drained server held: one member of their new chain had it already (in place), the other got it.
    assert.ok(r.moved > 0)
    await assertPlaced(conns, after, items, all.slice(1))
  })
})

function parseSame(text: string, file: string): ReturnType<typeof readPool> {
  writeFileSync(`${file}.expected`, text)
  return readPool(`${file}.expected`)
}
