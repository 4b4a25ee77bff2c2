import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync, writeFileSync } from 'node:fs'
import { PoolClient } from '../../src/core/client/index.js'
import { locateKey, poolPlacement } from '../../src/core/pool/placement.js'
import { runRebalance } from '../../src/core/jobs/rebalance.js'
import { startMemcached, type MemcachedServer } from '../helpers/memcached.js'
import { Conns, startPool, type TestPool } from './drain.fixtures.js'
import { assertPlaced, readPool, rebalanceOptions, seed } from './rebalance.fixtures.js'

/**
 * Pool-aware clients during a rebalance (move hand-off): the pool file is the new pool plus the
 * previous one in its `rebalance` record; the library writes the new owner and reads a key not
 * yet moved at its owner under the previous pool (another ring: an added server changes owners
 * that no deactivating server would explain).
 */
describe('rebalance with pool-aware clients', () => {
  const pools: TestPool[] = []
  const spares: MemcachedServer[] = []
  const conns = new Conns()
  let client: PoolClient | undefined
  after(async () => {
    await client?.close()
    await conns.close()
    await Promise.all([...pools.map((p) => p.stop()), ...spares.map((s) => s.kill())])
  })

  it('reads every key before, during and after the moves', async () => {
    const pool = await startPool(3, { hash: 'php-memcached-libketama', clients: 'pool-aware' })
    pools.push(pool)
    const spare = await startMemcached()
    spares.push(spare)
    const before = readPool(pool.file)
    const items = await seed(conns, before, 400)
    // The pool file as `rebalance --add` writes it before moving anything.
    const doc = JSON.parse(readFileSync(pool.file, 'utf8'))
    const previous = JSON.parse(readFileSync(pool.file, 'utf8'))
    doc.servers.push({ address: spare.address })
    doc.rebalance = { startedAt: new Date().toISOString(), handoff: 'move', threshold: 0.95, previous, sources: {} }
    writeFileSync(pool.file, JSON.stringify(doc))
    client = await PoolClient.fromPoolFile(pool.file, { reportInterval: 60 })
    const old = poolPlacement(before)
    let changed = 0
    for (const it of items.slice(0, 200)) {
      const k = it.key.toString()
      const where = client.locate(k)
      const was = locateKey(old, k).server
      assert.deepEqual(where.previousChain, [was])
      if (where.chain[0] !== was) {
        changed++
        assert.equal(where.chain[0], spare.address, 'adding a server to a ring only moves keys to it')
      }
      assert.deepEqual((await client.get(k))?.toString('hex'), it.value.toString('hex'), `${k} read through its previous owner`)
    }
    assert.ok(changed > 0)
    await client.settle()
    // The CLI finishes the rebalance (the same pool: it resumes), then the client reads the new pool.
    const r = await runRebalance(rebalanceOptions(pool, {}))
    assert.equal(r.status, 0, JSON.stringify(r.samples))
    const after = readPool(pool.file)
    assert.equal(after.rebalance, undefined)
    await assertPlaced(conns, after, items, after.servers.map((s) => s.address))
    for (const it of items) assert.equal((await client.get(it.key.toString()))?.toString('hex'), it.value.toString('hex'))
  })
})
