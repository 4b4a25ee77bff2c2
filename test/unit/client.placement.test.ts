/**
 * The library places keys exactly as the CLI does (poolPlacement / locate), for every strategy,
 * with and without a deactivating server. No connection is opened: memjs connects lazily.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { PoolClient } from '../../src/core/client/index.js'
import { fractionalWeights, HASH_NAMES, type HashName } from '../../src/core/placement/index.js'
import { activeServers, type Pool } from '../../src/core/pool/model.js'
import { locateKey, poolPlacement } from '../../src/core/pool/placement.js'
import { validatePool } from '../../src/core/pool/validate.js'

const KEYS = [
  ...Array.from({ length: 300 }, (_, i) => `key:${i}:${(i * 7919) % 1000}`),
  'héllo wörld',
  '中文键',
  'emoji 😀 key',
  'x'.repeat(250),
]

function pool(hash: string, replicas: number, deactivating?: number): Pool {
  const servers = Array.from({ length: 5 }, (_, i) => ({
    address: `10.0.0.${i + 1}:${11211 + (i % 2)}`,
    name: `cache-${i}`,
    weight: fractionalWeights(hash as HashName) ? [1, 0.5, 0.2, 0.9, 0][i] : [1, 2, 1, 3, 1][i],
    hostname: `mc-${i}.internal`,
    ...(i === deactivating ? { state: 'deactivating' } : {}),
  }))
  return validatePool({ hash, replicas, servers }, 'test')
}

for (const hash of HASH_NAMES) {
  test(`placement agrees with poolPlacement/locate: ${hash}`, async () => {
    for (const replicas of [1, 2, 3]) {
      const steady = pool(hash, replicas)
      const client = new PoolClient(steady)
      const pp = poolPlacement(steady)
      for (const key of KEYS) {
        const expected = locateKey(pp, key)
        const got = client.locate(key)
        assert.deepEqual(got.chain, expected.chain, `${hash} r${replicas} ${key}`)
        assert.equal(got.chain[0], expected.server)
        assert.equal(got.previousChain, undefined)
        assert.deepEqual(got.oldSources, [])
        // A Buffer key is the same key as its UTF-8 string.
        assert.deepEqual(client.locate(Buffer.from(key, 'utf8')).chain, expected.chain)
      }
      await client.close()

      const draining = pool(hash, replicas, 3)
      const mover = new PoolClient(draining)
      const now = poolPlacement(draining, activeServers(draining))
      const before = poolPlacement(draining, draining.servers.filter((s) => s.state !== 'removed'))
      for (const key of KEYS) {
        const got = mover.locate(key)
        const current = locateKey(now, key).chain
        const previous = locateKey(before, key).chain
        assert.deepEqual(got.chain, current, `${hash} r${replicas} ${key} (deactivating)`)
        assert.ok(!got.chain.includes(draining.servers[3]!.address), 'a deactivating server is never a destination')
        assert.deepEqual(got.previousChain, previous)
        assert.deepEqual(got.oldSources, previous.filter((a) => !current.includes(a)))
      }
      await mover.close()
    }
  })
}
