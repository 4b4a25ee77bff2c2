/**
 * The library and the binary agree: for every strategy, `memdrain locate --json` (the built CLI,
 * reading the same pool file) and `PoolClient.locate` give each key the same owner and chain,
 * with replicas 1 and 2 and with a deactivating server (a source, never a destination).
 */
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { runCli } from '../helpers/cli.js'
import { PoolClient } from '../../src/core/client/index.js'
import { fractionalWeights, HASH_NAMES } from '../../src/core/placement/index.js'

const work = mkdtempSync(path.join(tmpdir(), 'memdrain-client-locate-'))
after(() => rmSync(work, { recursive: true, force: true }))

const KEYS = [...Array.from({ length: 150 }, (_, i) => `user:${i}:${(i * 7919) % 997}`), 'héllo wörld', '中文键', 'x'.repeat(250)]

// The CLI and the library share the placement code; what can differ is how each reads the pool
// into it. So every strategy family runs here (every non-twemproxy strategy, twemproxy's old four
// and its default), not each of twemproxy's 48 hash × distribution × naming combinations.
const TWEMPROXY_HERE = new Set(['twemproxy-ketama-md5', 'twemproxy-ketama-md5-named', 'twemproxy-modula-fnv1a-64', 'twemproxy-modula-fnv1a-64-named', 'twemproxy-ketama-fnv1a-64'])

for (const hash of HASH_NAMES.filter((h) => !h.startsWith('twemproxy-') || TWEMPROXY_HERE.has(h))) {
  test(`PoolClient.locate agrees with memdrain locate: ${hash}`, async () => {
    for (const [replicas, deactivating] of [[1, undefined], [2, 2]] as const) {
      const file = path.join(work, `${hash}-${replicas}.json`)
      const servers = Array.from({ length: 5 }, (_, i) => ({
        address: `10.0.0.${i + 1}:${11211 + (i % 2)}`,
        name: `cache-${i}`,
        weight: fractionalWeights(hash) ? [1, 0.5, 0.2, 0.9, 0][i] : [1, 2, 1, 3, 1][i],
        // What spymemcached-ketama-libmemcached needs for an IP literal (the others ignore it).
        hostname: `mc-${i}.internal`,
        ...(i === deactivating ? { state: 'deactivating' } : {}),
      }))
      writeFileSync(file, JSON.stringify({ hash, replicas, servers }))
      const r = await runCli(['locate', '--json', '--pool', file], { input: KEYS.join('\n') + '\n' })
      assert.equal(r.code, 0, r.stderr)
      // No connection is opened: memjs connects on the first request.
      const client = await PoolClient.fromPoolFile(file, { watch: false, report: false })
      try {
        assert.equal(r.json.result.length, KEYS.length)
        KEYS.forEach((key, i) => {
          const cli = r.json.result[i] as { key: string; server: string; chain: string[] }
          assert.equal(cli.key, key)
          const lib = client.locate(key)
          assert.deepEqual(lib.chain, cli.chain, `${hash} replicas ${replicas} ${key}`)
          assert.equal(lib.chain[0], cli.server)
          if (deactivating !== undefined) assert.ok(!lib.chain.includes(servers[deactivating]!.address))
        })
      } finally {
        await client.close()
      }
    }
  })
}
