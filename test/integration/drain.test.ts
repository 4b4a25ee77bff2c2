import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { runDrain, type DrainOptions } from '../../src/core/jobs/drain.js'
import { MemdrainError } from '../../src/core/errors.js'
import { Conns, connect, deleteAll, drainOptions, getAll, keysOf, locateAll, setAll, startPool, stat, type Item, type TestPool } from './drain.fixtures.js'

/** Move hand-off: what lands where, with what, and what stays. */

async function expectRefusal(p: Promise<unknown>, code: string, exitCode: number): Promise<MemdrainError> {
  try {
    await p
  } catch (err) {
    assert.ok(err instanceof MemdrainError, `expected a MemdrainError, got ${String(err)}`)
    assert.equal(err.code, code, err.message)
    assert.equal(err.exitCode, exitCode, err.message)
    return err
  }
  assert.fail(`expected ${code}`)
}

describe('drain (move hand-off)', () => {
  const pools: TestPool[] = []
  const conns = new Conns()
  after(async () => {
    await conns.close()
    await Promise.all(pools.map((p) => p.stop()))
  })

  it('keeps values, client flags and TTLs (none, short, over 30 days, absolute), flushes only the drained server', async () => {
    const pool = await startPool(3, { hash: 'php-memcached-libketama', clients: 'pool-aware' })
    pools.push(pool)
    const [src, a, b] = pool.servers.map((s) => s.address) as [string, string, string]
    const now = Number((await (await conns.get(src)).stats()).get('time'))
    const items: Item[] = []
    for (let i = 0; i < 400; i++) {
      const kind = i % 5
      items.push({
        key: Buffer.from(`item:${i}`),
        value: Buffer.from(`value ${i} `.repeat(1 + (i % 7))),
        flags: [0, 1, 0xffffffff, 42, 7][kind]!,
        // none; 1000 s; 40 days (memcached reads > 30 days as absolute time); absolute, 600 s from now; 30 days exactly
        ttl: [0, 1000, now + 40 * 86400, now + 600, 2592000][kind]!,
      })
    }
    const expectTtl = [-1, 1000, 40 * 86400, 600, 2592000]
    await setAll(await conns.get(src), items)
    // The other servers' own keys must survive (only the drained server is flushed).
    const own = keysOf('own:', 50)
    for (const addr of [a, b]) await setAll(await conns.get(addr), own.map((key) => ({ key, value: Buffer.from(addr) })))

    const r = await runDrain(drainOptions(pool, src))
    assert.equal(r.status, 0)
    assert.equal(r.state, 'removed')
    assert.equal(r.purged, true)
    assert.equal(r.keysAtStart, 400)
    assert.equal(r.moved, 400)
    assert.equal(r.failed, 0)
    assert.equal(pool.server(src).state, 'removed')
    assert.ok(pool.server(src).transition?.finishedAt)

    for (const [i, it] of items.entries()) {
      const owner = pool.chainWithout(src, it.key)[0]!
      const got = (await getAll(await conns.get(owner), [it.key])).get(it.key.toString('hex'))
      assert.ok(got, `${it.key} missing at its owner ${owner}`)
      assert.deepEqual(got.value, it.value)
      assert.equal(got.flags, it.flags)
      const want = expectTtl[i % 5]!
      if (want === -1) assert.equal(got.ttl, -1)
      else assert.ok(Math.abs(got.ttl - want) <= 3, `${it.key}: TTL ${got.ttl}, expected about ${want}`)
    }
    // flush_all invalidates lazily (curr_items drops later): ask for the keys.
    assert.equal((await getAll(await conns.get(src), items.map((it) => it.key))).size, 0, 'the drained server is flushed')
    for (const addr of [a, b]) {
      const mine = await getAll(await conns.get(addr), own)
      assert.equal(mine.size, 50, `${addr} kept its own keys`)
      for (const v of mine.values()) assert.equal(v.value.toString(), addr)
    }
  })

  it('puts URI-encoded, non-ASCII, base64-only and 250-byte keys at exactly their owner', async () => {
    const pool = await startPool(4, { hash: 'pymemcache-rendezvous', clients: 'pool-aware' })
    pools.push(pool)
    const all = pool.servers.map((s) => s.address)
    const src = all[1]!
    const keys = [
      Buffer.from('%41 is not A'.replace(' ', '_')),
      Buffer.from('100%25'),
      Buffer.from('ключ:ü€😀'),
      Buffer.from('with space'),
      Buffer.from('tab\there'),
      Buffer.from([0x00, 0x01, 0x0a, 0x0d, 0x7f, 0xff]),
      Buffer.from('k'.repeat(250)),
      Buffer.from('€'.repeat(83) + 'x'), // 250 bytes of UTF-8
      Buffer.from('s'.repeat(185) + ' '), // 186 bytes with a space: the longest base64 key
      Buffer.from('a=b&c=d?e#f/g:h'),
    ]
    const unaddressable = Buffer.from('s'.repeat(190) + ' ') // written via base64? too long for the text protocol: set it on no server
    assert.equal(keys[6]!.length, 250)
    assert.equal(keys[7]!.length, 250)
    const items = keys.map((key, i) => ({ key, value: Buffer.from(`v${i}`), flags: i }))
    await setAll(await conns.get(src), items)

    const r = await runDrain(drainOptions(pool, src))
    assert.equal(r.status, 0, JSON.stringify(r.samples))
    assert.equal(r.moved, keys.length)
    assert.ok(unaddressable.length > 186)
    const remaining = all.filter((x) => x !== src)
    const where = await locateAll(remaining, keys)
    for (const [i, key] of keys.entries()) {
      const owner = pool.chainWithout(src, key)[0]!
      assert.deepEqual(where.get(key.toString('hex')), [owner], `key #${i} (${key.toString('hex')}) should be exactly at ${owner}`)
      const got = (await getAll(await conns.get(owner), [key])).get(key.toString('hex'))!
      assert.equal(got.value.toString(), `v${i}`)
      assert.equal(got.flags, i)
    }
  })

  it('leaves no stale value with a pool-aware writer writing the new owners during the move', async () => {
    const pool = await startPool(3, { hash: 'memjs', clients: 'pool-aware' })
    pools.push(pool)
    const [src] = pool.servers.map((s) => s.address) as [string]
    const keys = keysOf('hot:', 3000)
    await setAll(await conns.get(src), keys.map((key) => ({ key, value: Buffer.from('original') })))
    const last = new Map<string, string>()
    let stop = false
    let writes = 0
    const writer = (async () => {
      const wconns = new Conns()
      try {
        while (!stop) {
          // A pool-aware client: write the new owner, delete the old copy.
          const batch: { key: Buffer; value: string }[] = []
          for (let j = 0; j < 50; j++) {
            const key = keys[Math.floor(Math.random() * keys.length)]!
            batch.push({ key, value: `w${writes++}` })
          }
          for (const w of batch) {
            await setAll(await wconns.get(pool.chainWithout(src, w.key)[0]!), [{ key: w.key, value: Buffer.from(w.value) }])
            last.set(w.key.toString('hex'), w.value)
          }
          await deleteAll(await wconns.get(src), batch.map((w) => w.key))
          await sleep(1)
        }
      } finally {
        await wconns.close()
      }
    })()
    // The token bucket allows a one-second burst: 3000 keys at 1000/s take about 2 s.
    const r = await runDrain(drainOptions(pool, src, { rate: 1000, batchSize: 100 }))
    stop = true
    await writer
    assert.equal(r.status, 0, JSON.stringify({ ...r, preflight: undefined }))
    assert.ok(r.inPlace + (r.skipped.gone ?? 0) > 0, 'the writer raced the drain')
    assert.ok(writes > 200, `the writer ran during the drain (${writes} writes)`)
    for (const key of keys) {
      const owner = pool.chainWithout(src, key)[0]!
      const got = (await getAll(await conns.get(owner), [key])).get(key.toString('hex'))
      const want = last.get(key.toString('hex')) ?? 'original'
      if (got !== undefined) assert.equal(got.value.toString(), want, `${key}: stale value at ${owner}`)
    }
  })

  it('puts each key on both members of its new chain with replicas 2', async () => {
    const pool = await startPool(4, { hash: 'php-memcached-consistent', replicas: 2, clients: 'pool-aware' })
    pools.push(pool)
    const all = pool.servers.map((s) => s.address)
    const src = all[2]!
    const keys = keysOf('rep:', 500)
    await setAll(await conns.get(src), keys.map((key, i) => ({ key, value: Buffer.from(`r${i}`) })))
    const r = await runDrain(drainOptions(pool, src))
    assert.equal(r.status, 0)
    assert.equal(r.moved, 500)
    const where = await locateAll(all.filter((x) => x !== src), keys)
    for (const key of keys) {
      const chain = pool.chainWithout(src, key)
      assert.equal(chain.length, 2)
      assert.deepEqual([...(where.get(key.toString('hex')) ?? [])].sort(), [...chain].sort(), `${key} should be on ${chain.join(' and ')}`)
    }
  })

  it('reaches the same end state when interrupted and resumed', async () => {
    const pool = await startPool(3, { hash: 'twemproxy-ketama-md5', clients: 'pool-aware' })
    pools.push(pool)
    const [src] = pool.servers.map((s) => s.address) as [string]
    const keys = keysOf('resume:', 4000)
    await setAll(await conns.get(src), keys.map((key, i) => ({ key, value: Buffer.from(`value-${i}`), flags: i })))
    const ac = new AbortController()
    // Interrupted once keys are moving (event-driven: a loaded machine dumps slower).
    const first = await runDrain(drainOptions(pool, src, { rate: 1500, batchSize: 100, signal: ac.signal, onEvent: (e) => e.type === 'progress' && e.tally.moved > 0 && ac.abort() }))
    assert.equal(first.status, 69)
    assert.equal(first.interrupted, true)
    const rec = pool.server(src)
    assert.equal(rec.state, 'deactivating')
    assert.ok(rec.transition !== undefined && rec.transition.moved > 0 && rec.transition.moved < 4000, `moved ${rec.transition?.moved}`)
    assert.equal(rec.transition.keysAtStart, 4000)

    const second = await runDrain(drainOptions(pool, src))
    assert.equal(second.status, 0)
    assert.equal(second.resumed, true)
    assert.equal(second.state, 'removed')
    assert.equal(second.moved, 4000, 'moved over both runs')
    assert.equal(second.ratio, 1)
    for (const [i, key] of keys.entries()) {
      const owner = pool.chainWithout(src, key)[0]!
      const got = (await getAll(await conns.get(owner), [key])).get(key.toString('hex'))
      assert.ok(got, `${key} missing`)
      assert.equal(got.value.toString(), `value-${i}`)
      assert.equal(got.flags, i)
    }
    assert.equal((await getAll(await conns.get(src), keys)).size, 0, 'the drained server is flushed')
  })

  it('ends partial (68) with the record kept when a destination stops mid-way, and finishes on a rerun', async () => {
    const pool = await startPool(3, { hash: 'memjs', clients: 'pool-aware' })
    pools.push(pool)
    const [src, a, b] = pool.servers as [(typeof pool.servers)[0], (typeof pool.servers)[0], (typeof pool.servers)[0]]
    const keys = keysOf('down:', 3000)
    await setAll(await conns.get(src.address), keys.map((key) => ({ key, value: Buffer.from('x'.repeat(100)) })))
    // b is a source too (modulo pool): it stops once keys move, not after a fixed delay (a slow
    // machine may still be dumping then, and a source down before the move is a refusal).
    let killed = false
    const onEvent: DrainOptions['onEvent'] = (e) => {
      if (killed || e.type !== 'progress' || e.source !== src.address || e.done === 0) return
      killed = true
      void b.kill()
    }
    const r = await runDrain(drainOptions(pool, src.address, { rate: 1000, batchSize: 100, onEvent }))
    assert.ok(killed, 'b was stopped during the move')
    assert.equal(r.status, 68)
    assert.ok(r.failed > 0)
    assert.equal(r.state, 'deactivating')
    assert.equal(r.purged, false)
    const rec = pool.server(src.address)
    assert.equal(rec.state, 'deactivating')
    assert.equal(rec.transition?.keysAtStart, 3000)
    assert.ok(rec.transition.moved < 3000)
    assert.ok((await stat(src.address, 'curr_items')) > 0, 'not purged')
    assert.ok((await stat(a.address, 'curr_items')) > 0)

    await b.restart()
    const again = await runDrain(drainOptions(pool, src.address))
    assert.equal(again.status, 0)
    assert.equal(again.state, 'removed')
  })
})

describe('drain refusals', () => {
  const pools: TestPool[] = []
  after(async () => {
    await Promise.all(pools.map((p) => p.stop()))
  })

  it('refuses a server not in the pool (2) and the last active server (3)', async () => {
    const pool = await startPool(1)
    pools.push(pool)
    await expectRefusal(runDrain(drainOptions(pool, '127.0.0.1:1', { handoff: 'move' })), 'SERVER_NOT_IN_POOL', 2)
    await expectRefusal(runDrain(drainOptions(pool, pool.servers[0]!.address, { handoff: 'move' })), 'LAST_ACTIVE_SERVER', 3)
    assert.equal(pool.server(pool.servers[0]!.address).state, 'active')
  })

  it('refuses a source with dumps disabled (-X) and leaves the pool as it was', async () => {
    const pool = await startPool(2, { clients: 'pool-aware', server: (i) => (i === 0 ? { disableDumps: true } : {}) })
    pools.push(pool)
    const src = pool.servers[0]!.address
    const c = await connect(src)
    await setAll(c, keysOf('x', 10).map((key) => ({ key, value: Buffer.from('v') })))
    await c.close()
    const err = await expectRefusal(runDrain(drainOptions(pool, src)), 'DUMPS_DISABLED', 3)
    assert.match(err.message, /-X|metadump|dump/i)
    assert.equal(pool.server(src).state, 'active')
    assert.equal(pool.server(src).transition, undefined)
    assert.equal(existsSync(`${pool.file}.lock`), false, 'the lock is released')
  })

  it('refuses with POOL_LOCKED naming the holder while another drain runs', async () => {
    const pool = await startPool(3)
    pools.push(pool)
    const [src, other] = pool.servers.map((s) => s.address) as [string, string]
    let release!: () => void
    let waiting!: () => void
    const isWaiting = new Promise<void>((resolve) => (waiting = resolve))
    const first = runDrain(
      drainOptions(pool, src, {
        handoff: 'copy',
        waitForSwitch: () => {
          waiting()
          return new Promise<void>((resolve) => (release = resolve))
        },
      }),
    )
    await isWaiting
    const err = await expectRefusal(runDrain(drainOptions(pool, other, { handoff: 'move' })), 'POOL_LOCKED', 3)
    assert.match(err.message, new RegExp(`memdrain drain ${src.replace(/\./g, '\\.')}`))
    assert.match(err.message, new RegExp(`pid ${process.pid}`))
    release()
    assert.equal((await first).status, 0)
  })

  it('refuses NO_ROOM (3) when a destination is too small, and with allowEvictions stops at min-free without evicting', async () => {
    const pool = await startPool(2, { clients: 'pool-aware', server: (i) => (i === 1 ? { memoryMb: 8 } : {}) })
    pools.push(pool)
    const [src, small] = pool.servers.map((s) => s.address) as [string, string]
    const keys = keysOf('big:', 4000)
    const value = Buffer.alloc(3000, 0x61)
    const c = await connect(src)
    await setAll(c, keys.map((key) => ({ key, value })))
    await c.close()

    const err = await expectRefusal(runDrain(drainOptions(pool, src)), 'NO_ROOM', 3)
    assert.match(err.message, new RegExp(small.replace(/\./g, '\\.')))
    assert.equal(pool.server(src).state, 'active', 'refused before moving: the pool is as it was')
    assert.equal(await stat(small, 'curr_items'), 0)

    const r = await runDrain(drainOptions(pool, src, { allowEvictions: true }))
    assert.equal(r.status, 68)
    assert.ok(r.failedBy['destination-full']! > 0, JSON.stringify(r.failedBy))
    assert.ok(r.moved > 1000, `moved ${r.moved} before the guard stopped`)
    assert.equal(await stat(small, 'evictions'), 0, 'the drain made the destination evict')
    assert.equal(pool.server(src).state, 'deactivating')
  })

  it('ends partial (68) at threshold 1 when a key is too large for its destination', async () => {
    const pool = await startPool(2, { clients: 'pool-aware', server: (i) => (i === 0 ? { itemSizeMax: '2m' } : {}) })
    pools.push(pool)
    const [src, dest] = pool.servers.map((s) => s.address) as [string, string]
    const c = await connect(src)
    await setAll(c, [...keysOf('ok:', 100).map((key) => ({ key, value: Buffer.from('fine') })), { key: Buffer.from('huge'), value: Buffer.alloc(1500 * 1024, 0x62) }])
    await c.close()
    const r = await runDrain(drainOptions(pool, src, { threshold: 1 }))
    assert.equal(r.status, 68)
    assert.equal(r.skipped['too-large'], 1)
    assert.equal(r.moved, 100)
    assert.equal(r.purged, false)
    const rec = pool.server(src)
    assert.equal(rec.state, 'deactivating')
    assert.equal(rec.transition?.keysAtStart, 101)
    assert.equal(rec.transition.moved, 100)
    assert.equal(rec.transition.skipped['too-large'], 1)
    assert.equal(await stat(dest, 'curr_items'), 100)
  })
})
