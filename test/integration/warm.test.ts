import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import path from 'node:path'
import { runWarm, type WarmOptions } from '../../src/core/jobs/warm.js'
import { FilePoolStore } from '../../src/core/pool/store.js'
import { poolPlacement } from '../../src/core/pool/placement.js'
import { poolToDocument } from '../../src/core/pool/model.js'
import { MemdrainError } from '../../src/core/errors.js'
import { Conns, getAll, keysOf, setAll, startPool, writesOn, type Item, type TestPool } from './drain.fixtures.js'
import { runCli } from '../helpers/cli.js'

/** warm: restore a server that came back empty from the peers that hold its keys. */

function warmOptions(pool: TestPool, server: string, extra: Partial<WarmOptions> = {}): WarmOptions {
  return {
    store: pool.store,
    server,
    threshold: 0.95,
    rate: 0,
    bandwidth: 0,
    minTtl: 2,
    minFree: 0.1,
    allowEvictions: false,
    order: 'hot-first',
    spoolDir: path.join(pool.dir, 'spool'),
    ...extra,
  }
}

/** Writes every item to each member of its chain, as a replicating client does. Returns key hex → chain addresses. */
async function writeReplicated(pool: TestPool, conns: Conns, items: readonly Item[]): Promise<Map<string, string[]>> {
  const pp = poolPlacement(pool.pool())
  const perServer = new Map<string, Item[]>()
  const chains = new Map<string, string[]>()
  for (const it of items) {
    const chain = pp.placement.chain(it.key, pp.replicas).map((i) => pp.servers[i]!.address)
    chains.set(it.key.toString('hex'), chain)
    for (const a of chain) perServer.set(a, [...(perServer.get(a) ?? []), it])
  }
  for (const [a, list] of perServer) await setAll(await conns.get(a), list)
  return chains
}

describe('warm', () => {
  const pools: TestPool[] = []
  const conns = new Conns()
  after(async () => {
    await conns.close()
    await Promise.all(pools.map((p) => p.stop()))
  })

  it('restores every key whose chain includes a restarted server (replicas 2), keeps what the app wrote since, never writes a peer', async () => {
    const pool = await startPool(3, { hash: 'php-memcached-libketama', replicas: 2 })
    pools.push(pool)
    const [s0, s1, s2] = pool.servers
    const target = s1!.address
    const items: Item[] = Array.from({ length: 900 }, (_, i) => ({
      key: Buffer.from(`warm:${i}`),
      value: Buffer.from(`value-${i}-`.repeat(1 + (i % 5))),
      flags: i % 3 === 0 ? 0 : 1000 + i,
      ttl: i % 4 === 0 ? 0 : 3000 + i,
    }))
    const chains = await writeReplicated(pool, conns, items)
    const mine = items.filter((it) => chains.get(it.key.toString('hex'))!.includes(target))
    const others = items.filter((it) => !chains.get(it.key.toString('hex'))!.includes(target))
    assert.ok(mine.length > 300 && others.length > 100, `placement spreads keys: ${mine.length} belong on ${target}, ${others.length} do not`)

    await s1!.restart()
    assert.equal((await getAll(await conns.get(target), mine.map((it) => it.key))).size, 0, 'the restarted server is empty')
    // After the restart the application writes some of the keys anew: warm must keep these.
    const rewritten = mine.slice(0, 25).map((it) => ({ key: it.key, value: Buffer.from('written-after-restart'), flags: 7 }))
    await setAll(await conns.get(target), rewritten)
    const peerWrites = await Promise.all([s0!.address, s2!.address].map(writesOn))

    const r = await runWarm(warmOptions(pool, target))
    assert.equal(r.status, 0, JSON.stringify(r))
    assert.equal(r.found, mine.length, 'each key that belongs there is found once, on its preferred peer')
    assert.equal(r.restored, mine.length - rewritten.length)
    assert.equal(r.inPlace, rewritten.length)
    assert.equal(r.failed, 0)
    assert.equal(r.ratio, 1)
    assert.deepEqual(r.unreachablePeers, [])

    const got = await getAll(await conns.get(target), items.map((it) => it.key))
    const rewrittenHex = new Set(rewritten.map((it) => it.key.toString('hex')))
    for (const it of mine) {
      const hex = it.key.toString('hex')
      const g = got.get(hex)
      assert.ok(g, `${it.key} was not restored`)
      if (rewrittenHex.has(hex)) {
        assert.equal(g.value.toString(), 'written-after-restart', `${it.key}: the application's newer value was overwritten`)
        assert.equal(g.flags, 7)
        continue
      }
      assert.deepEqual(g.value, it.value)
      assert.equal(g.flags, it.flags)
      if (it.ttl === 0) assert.equal(g.ttl, -1)
      else assert.ok(Math.abs(g.ttl - it.ttl!) <= 5, `${it.key}: TTL ${g.ttl}, expected about ${it.ttl}`)
    }
    for (const it of others) assert.equal(got.has(it.key.toString('hex')), false, `${it.key} does not belong on ${target}`)
    assert.deepEqual(await Promise.all([s0!.address, s2!.address].map(writesOn)), peerWrites, 'the peers were written to')

    // Run again: everything is there already.
    const again = await runWarm(warmOptions(pool, target))
    assert.equal(again.restored, 0)
    assert.equal(again.inPlace, mine.length)
    assert.equal(again.status, 0)
  })

  it('--from: restores the keys a replaced server owned in the previous pool from their current owners', async () => {
    const pool = await startPool(3, { hash: 'memjs' })
    pools.push(pool)
    const [a, b, c] = pool.servers.map((s) => s.address) as [string, string, string]
    // The previous pool had all three; then c failed and the pool went on without it.
    const oldFile = path.join(pool.dir, 'old.json')
    writeFileSync(oldFile, JSON.stringify(poolToDocument(pool.pool())))
    const oldPool = poolPlacement(pool.pool())
    writeFileSync(pool.file, JSON.stringify({ hash: 'memjs', replicas: 1, servers: [{ address: a }, { address: b }, { address: c, state: 'removed' }] }))
    const now = poolPlacement(pool.pool())
    const keys = keysOf('replaced:', 600)
    const byOwner = new Map<string, Item[]>()
    for (const key of keys) {
      const owner = now.servers[now.placement.owner(key)]!.address
      byOwner.set(owner, [...(byOwner.get(owner) ?? []), { key, value: Buffer.from(`v:${key.toString()}`), flags: 5 }])
    }
    for (const [addr, list] of byOwner) await setAll(await conns.get(addr), list)
    const belongs = keys.filter((k) => oldPool.servers[oldPool.placement.owner(k)]!.address === c)
    assert.ok(belongs.length > 100)

    // Without --from a replicas-1 pool has nothing to warm from.
    await assert.rejects(runWarm(warmOptions(pool, c)), (err: unknown) => err instanceof MemdrainError && err.code === 'SERVER_NOT_ACTIVE' && err.exitCode === 3)
    const r = await runWarm(warmOptions(pool, c, { from: new FilePoolStore(oldFile) }))
    assert.equal(r.status, 0, JSON.stringify(r))
    assert.equal(r.found, belongs.length)
    assert.equal(r.restored, belongs.length)
    const got = await getAll(await conns.get(c), keys)
    assert.equal(got.size, belongs.length)
    for (const k of belongs) {
      const g = got.get(k.toString('hex'))
      assert.ok(g, `${k} not restored`)
      assert.equal(g.value.toString(), `v:${k.toString()}`)
      assert.equal(g.flags, 5)
    }
  })

  it('refuses a replicas-1 pool without --from (exit 2), and reports through the CLI with --json', async () => {
    const pool = await startPool(2)
    pools.push(pool)
    const [a] = pool.servers.map((s) => s.address) as [string]
    await assert.rejects(runWarm(warmOptions(pool, a)), (err: unknown) => err instanceof MemdrainError && err.code === 'NO_REPLICAS' && err.exitCode === 2)
    const refused = await runCli(['warm', a, '--pool', pool.file, '--json'])
    assert.equal(refused.code, 2, refused.stderr)
    assert.equal(refused.json.error.code, 'NO_REPLICAS')

    writeFileSync(pool.file, JSON.stringify({ hash: 'memjs', replicas: 2, servers: pool.servers.map((s) => ({ address: s.address })) }))
    const keys = keysOf('cli:', 100)
    await setAll(await conns.get(pool.servers[1]!.address), keys.map((key) => ({ key, value: Buffer.from('x') })))
    const ok = await runCli(['warm', a, '--pool', pool.file, '--json', '--rate', '0', '--spool-dir', path.join(pool.dir, 'spool')])
    assert.equal(ok.code, 0, ok.stderr)
    assert.equal(ok.json.status, 0)
    assert.equal(ok.json.result.restored, 100)
    assert.equal(ok.json.result.ratio, 1)
    assert.equal((await getAll(await conns.get(a), keys)).size, 100)
  })

  it('status shows each server\'s share of keys, of owned keys and of copies with replicas 2', async () => {
    const pool = await startPool(3, { hash: 'php-memcached-libketama', replicas: 2 })
    pools.push(pool)
    const r = await runCli(['status', '--pool', pool.file, '--json'])
    assert.equal(r.code, 0, r.stderr)
    const servers = r.json.result.servers as { share: number; primaryShare: number; copyShare: number }[]
    const sum = (f: (s: (typeof servers)[number]) => number): number => servers.reduce((n, s) => n + f(s), 0)
    assert.ok(Math.abs(sum((s) => s.share) - 2) < 1e-9, 'each key is on 2 chains')
    assert.ok(Math.abs(sum((s) => s.primaryShare) - 1) < 1e-9)
    assert.ok(Math.abs(sum((s) => s.copyShare) - 1) < 1e-9)
    for (const s of servers) {
      assert.ok(s.primaryShare > 0.1 && s.primaryShare < s.share, JSON.stringify(s))
      assert.ok(Math.abs(s.copyShare - s.share / 2) < 1e-9)
    }
    const text = await runCli(['status', '--pool', pool.file])
    assert.match(text.stdout, /PRIMARY/)
    assert.match(text.stdout, /COPIES/)
  })
})
