import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { runCli } from '../helpers/cli.js'
import { startMemcached, type MemcachedServer } from '../helpers/memcached.js'
import { LIVE_CLIENTS, removeBuilds, runClient, type ReadReport } from '../helpers/live-clients.js'

/**
 * Live conformance: for every client on this machine, keys written through the real client to
 * three real memcached servers, one server drained with the built memdrain CLI, then every key read
 * back through the same client configured without that server: 100 % hits, values and types as
 * written. A client that is not installed is skipped with the reason (scripts/setup.sh installs them).
 */

const KEYS = 2000

describe('live clients: drain one server, every key still readable through the client', { concurrency: 2 }, () => {
  const servers: MemcachedServer[] = []
  const dirs: string[] = []
  after(async () => {
    await Promise.all(servers.map((s) => s.kill()))
    for (const d of dirs) rmSync(d, { recursive: true, force: true })
    await removeBuilds()
  })

  for (const client of LIVE_CLIENTS) {
    const missing = client.missing()
    it(`${client.name} → ${client.hash}`, { skip: missing === undefined ? false : `${missing}` }, async () => {
      const pool = await Promise.all([0, 1, 2].map(() => startMemcached()))
      servers.push(...pool)
      const addresses = pool.map((s) => s.address)
      const dir = mkdtempSync(path.join(tmpdir(), 'memdrain-live-'))
      dirs.push(dir)
      const poolFile = path.join(dir, 'memdrain.json')
      writeFileSync(poolFile, JSON.stringify({ hash: client.hash, servers: addresses.map((address) => ({ address })) }))
      const prefix = `live-${client.hash}`

      const wrote = await runClient<{ written: number }>(client, 'write', addresses, KEYS, prefix)
      assert.equal(wrote.written, KEYS)
      const before = await runClient<ReadReport>(client, 'read', addresses, KEYS, prefix)
      assert.deepEqual([before.hits, before.mismatches], [KEYS, 0], `the client reads its own writes: ${JSON.stringify(before)}`)

      const drained = addresses[1]!
      const r = await runCli(['drain', drained, '--pool', poolFile, '--yes', '--json', '--switch-command', 'true', '--spool-dir', path.join(dir, 'spool'), '--rate', '0'], { timeoutMs: 90_000 })
      assert.equal(r.code, 0, `drain: ${r.stdout}\n${r.stderr}`)

      const rest = addresses.filter((a) => a !== drained)
      const back = await runClient<ReadReport>(client, 'read', rest, KEYS, prefix)
      assert.deepEqual(
        { hits: back.hits, misses: back.misses, mismatches: back.mismatches },
        { hits: KEYS, misses: 0, mismatches: 0 },
        `${client.name} without ${drained}: ${back.examples.join('; ')}`,
      )
    })
  }
})
