/**
 * PoolClient.metrics(): the client's counters as Prometheus text for an application's own
 * /metrics, after real operations against real memcached (hits, misses, a fallback read that
 * moves a key off a deactivating server, per-server requests).
 */
import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { PoolClient } from '../../src/core/client/index.js'
import { validatePool } from '../../src/core/pool/validate.js'
import { rawCommand, startMemcached } from '../helpers/memcached.js'
import { parseExposition } from '../helpers/prom.js'

describe('PoolClient.metrics()', () => {
  const stops: (() => Promise<void>)[] = []
  after(async () => {
    for (const s of stops) await s()
  })

  it('counts operations, hits, misses, fallback hits, migrations and requests per server', async () => {
    const servers = await Promise.all([startMemcached(), startMemcached()])
    stops.push(() => Promise.all(servers.map((s) => s.stop())).then(() => undefined))
    const [a, b] = servers.map((s) => s.address) as [string, string]
    // b is deactivating: keys are placed on a alone, and a miss there reads b.
    const pool = validatePool({ hash: 'memjs', servers: [{ address: a }, { address: b, state: 'deactivating', transition: { startedAt: new Date().toISOString(), keysAtStart: 0, moved: 0, inPlace: 0, skipped: {}, failed: 0, conflicts: 0, passes: 0, threshold: 0.95, movedByClients: 0 } }] }, 'test')
    const client = new PoolClient(pool, { watch: false })
    stops.unshift(() => client.close())

    for (let i = 0; i < 10; i++) await client.set(`k${i}`, `v${i}`)
    for (let i = 0; i < 10; i++) assert.equal((await client.get(`k${i}`))?.toString(), `v${i}`)
    for (let i = 0; i < 5; i++) assert.equal(await client.get(`absent${i}`), undefined)
    // A key still on its old owner b: the read falls back to b, answers, and moves it.
    const old = 'old-key'
    assert.deepEqual(client.locate(old).oldSources, [b])
    assert.equal(await rawCommand(b, `ms ${old} 3 T0\r\nold\r\nmn\r\n`), 'HD\r\nMN\r\n')
    assert.equal((await client.get(old))?.toString(), 'old')
    await client.settle()

    const text = await client.metrics()
    const m = parseExposition(text)
    const st = client.stats()
    assert.equal(m.value('memdrain_client_operations_total', { op: 'set' }), 10)
    assert.equal(m.value('memdrain_client_operations_total', { op: 'get' }), 16)
    assert.equal(m.value('memdrain_client_hits_total'), 11)
    assert.equal(m.value('memdrain_client_misses_total'), 5)
    assert.equal(m.value('memdrain_client_fallback_reads_total', { result: 'hit' }), 1)
    assert.equal(m.value('memdrain_client_fallback_reads_total', { result: 'miss' }), st.fallbackReads - 1)
    assert.equal(m.value('memdrain_client_migrations_total', { via: 'read' }), 1)
    assert.equal(m.value('memdrain_client_server_moved_keys_total', { server: b }), 1)
    assert.equal(m.value('memdrain_client_server_requests_total', { server: a }), st.servers[a]!.requests)
    assert.ok(st.servers[a]!.requests >= 26)
    assert.equal(m.value('memdrain_client_server_up', { server: a, role: 'active' }), 1)
    assert.equal(m.value('memdrain_client_server_up', { server: b, role: 'deactivating' }), 1)
    assert.equal(m.sum('memdrain_client_errors_total'), 0)
    assert.equal(m.types.get('memdrain_client_operations_total'), 'counter')
    assert.equal(m.value('memdrain_client_pool_info', { hash: 'memjs', replicas: '1' }), 1)

    // A second exposition follows the counters, and never includes another registry's metrics.
    await client.get('k1')
    const again = parseExposition(await client.metrics())
    assert.equal(again.value('memdrain_client_operations_total', { op: 'get' }), 17)
    assert.equal(again.samples.filter((s) => !s.name.startsWith('memdrain_client_')).length, 0)
  })
})
