import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { runDrain } from '../../src/core/jobs/drain.js'
import { PoolClient } from '../../src/core/client/pool-client.js'
import { assertPoolAgrees, Conns, drainOptions, getAll, keysOf, locateAll, setAll, startPool, type TestPool } from './drain.fixtures.js'
import { startProxy, type TcpProxy } from '../helpers/tcp-proxy.js'

/**
 * Faults of the servers around a drain: a destination stalled (SIGSTOP/SIGCONT), a source that
 * restarts empty, slow/truncating/dropping links (TCP proxy), and an application writing and
 * deleting through its placement while the drain runs. After each: no key lost that nobody
 * touched, none stale, none deleted that came back. Bounded: every drain has a deadline.
 */

/** Fails the test instead of hanging when `p` takes longer than `ms`. */
async function within<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms)
  })
  try {
    return await Promise.race([p, deadline])
  } finally {
    clearTimeout(timer)
  }
}

describe('faults: servers', () => {
  const pools: TestPool[] = []
  const proxies: TcpProxy[] = []
  const conns = new Conns()
  after(async () => {
    await conns.close()
    await Promise.all(proxies.map((p) => p.close()))
    await Promise.all(pools.map((p) => p.stop()))
  })

  /** Every key at its owner (under the pool without `src`) with its value and flags, and nowhere else. */
  async function assertAtOwners(pool: TestPool, src: string, keys: Buffer[], value: (i: number) => string, addresses = pool.servers.map((s) => s.address)): Promise<void> {
    const where = await locateAll(addresses, keys)
    for (const [i, key] of keys.entries()) {
      const owner = pool.chainWithout(src, key)[0]!
      assert.deepEqual(where.get(key.toString('hex')), [owner], `${key} is at ${String(where.get(key.toString('hex')))}, owner ${owner}`)
      const got = (await getAll(await conns.get(owner), [key])).get(key.toString('hex'))!
      assert.equal(got.value.toString(), value(i))
      assert.equal(got.flags, i % 65536)
    }
  }

  it('a destination stalled by SIGSTOP (3 s, and until the guard sees it down): timeouts fire, the job pauses on it, continues after SIGCONT, nothing lost or hung', async () => {
    // A ring: the faulty servers are destinations only (with a modulo placement every server is also a source).
    const pool = await startPool(3, { hash: 'php-memcached-libketama', clients: 'pool-aware' })
    pools.push(pool)
    const [src, , stalled] = pool.servers as [(typeof pool.servers)[0], (typeof pool.servers)[0], (typeof pool.servers)[0]]
    const keys = keysOf('stall:', 3000)
    await setAll(await conns.get(src.address), keys.map((key, i) => ({ key, value: Buffer.from(`v${i}`), flags: i, ttl: 3600 })))
    const states: string[] = []
    let resumedAt = 0
    let resume: NodeJS.Timeout | undefined
    const resumeAfter = (ms: number): void => {
      clearTimeout(resume)
      resume = setTimeout(() => {
        stalled.resume()
        resumedAt = Date.now()
      }, ms)
    }
    // Stalled for at least 3 s and until the guard has seen it down (its stats time out after 2 s,
    // polled every second: under load a fixed 3 s stall could end before a poll timed out).
    let pausedAt = 0
    setTimeout(() => {
      stalled.pause()
      pausedAt = Date.now()
      resumeAfter(15_000)
    }, 300)
    const r = await within(
      45_000,
      'the drain around a stalled destination',
      runDrain(
        drainOptions(pool, src.address, {
          rate: 800,
          batchSize: 100,
          onEvent: (e) => {
            if (e.type !== 'guard' || e.health.address !== stalled.address) return
            states.push(e.health.state)
            if (e.health.state === 'down' && resumedAt === 0) resumeAfter(Math.max(0, pausedAt + 3000 - Date.now()))
          },
        }),
      ),
    )
    assert.ok(resumedAt > 0, 'the drain outlasted the stall')
    assert.ok(states.includes('down'), `the guard saw the stalled destination down: ${states.join(',')}`)
    assert.equal(states.at(-1), 'ok', `and back: ${states.join(',')}`)
    // Keys that failed while it was stalled are moved by a later pass of the same run.
    assert.equal(r.ratio, 1, JSON.stringify({ ...r, preflight: undefined, samples: r.samples.slice(0, 3) }))
    assert.equal(r.state, 'removed')
    assert.ok(r.destinations.find((d) => d.address === stalled.address)!.keys > 0)
    // Failures of a pass that a later pass moved are not failures of the job: it ends with 0.
    assert.equal(r.failed, 0, JSON.stringify(r.failedBy))
    assert.equal(r.status, 0)
    await assertAtOwners(pool, src.address, keys, (i) => `v${i}`)
    await assertPoolAgrees(pool, r, 0)
  })

  it('the source restarts empty mid-drain: the drain ends cleanly and says why; nothing moved is lost', async () => {
    const pool = await startPool(3, { hash: 'memjs', clients: 'pool-aware' })
    pools.push(pool)
    const [src] = pool.servers as [(typeof pool.servers)[0]]
    const keys = keysOf('restart:', 3000)
    await setAll(await conns.get(src.address), keys.map((key, i) => ({ key, value: Buffer.from(`v${i}`), flags: i })))
    setTimeout(() => void src.restart(), 700)
    const messages: string[] = []
    const r = await within(
      30_000,
      'the drain of a restarting source',
      runDrain(drainOptions(pool, src.address, { rate: 1000, batchSize: 100, onEvent: (e) => e.type === 'source-restarted' && messages.push(e.message) })),
    )
    assert.ok(r.moved > 0 && r.moved < keys.length, `the restart came mid-drain (moved ${r.moved})`)
    assert.equal(r.sourceRestarted, true)
    assert.equal(messages.length, 1)
    assert.match(messages[0]!, /restarted/)
    assert.ok((r.skipped.gone ?? 0) >= keys.length - r.moved - r.inPlace, 'the keys the restart lost are counted gone')
    assert.equal(r.state, 'removed')
    // Every key that was moved is at its owner with its value; none is on a wrong server.
    const where = await locateAll(pool.servers.map((s) => s.address), keys)
    let found = 0
    for (const [i, key] of keys.entries()) {
      const at = where.get(key.toString('hex'))
      if (at === undefined) continue
      found++
      const owner = pool.chainWithout(src.address, key)[0]!
      assert.deepEqual(at, [owner])
      const got = (await getAll(await conns.get(owner), [key])).get(key.toString('hex'))!
      assert.equal(got.value.toString(), `v${i}`)
    }
    assert.equal(found, r.moved, 'every moved key is where the report says')
    // No save lands after the end: the pool file, pool show and status keep saying what the result said.
    await assertPoolAgrees(pool, r)
  })

  it('slow, truncated and dropped links (TCP proxy): no key lost or stale; a rerun completes what failed', async () => {
    // A ring: the faulty servers are destinations only (with a modulo placement every server is also a source).
    const pool = await startPool(3, { hash: 'php-memcached-libketama', clients: 'pool-aware' })
    pools.push(pool)
    const [src, a, b] = pool.servers as [(typeof pool.servers)[0], (typeof pool.servers)[0], (typeof pool.servers)[0]]
    // The pool names the proxies: memdrain (and placement) see only them.
    const [pa, pb] = await Promise.all([startProxy(a.address), startProxy(b.address)])
    proxies.push(pa, pb)
    writeFileSync(pool.file, JSON.stringify({ hash: 'php-memcached-libketama', clients: 'pool-aware', servers: [{ address: src.address }, { address: pa.address }, { address: pb.address }] }))
    const real = new Map([
      [pa.address, a.address],
      [pb.address, b.address],
    ])
    const keys = keysOf('link:', 2000)
    await setAll(await conns.get(src.address), keys.map((key, i) => ({ key, value: Buffer.from(`v${i}`.padEnd(200, '.')), flags: i })))
    pa.delayMs = 40 // slow but alive
    setTimeout(() => pb.truncateAfter(3000), 400) // b's links cut mid-reply
    setTimeout(() => pb.truncateAfter(-1), 1500)
    setTimeout(() => pa.dropAll(), 900) // a's links reset once
    const first = await within(45_000, 'the drain over bad links', runDrain(drainOptions(pool, src.address, { rate: 1000, batchSize: 100 })))
    assert.ok(pb.accepted > 1 || pa.accepted > 1, 'the links were re-established')
    await assertPoolAgrees(pool, first, 0)
    // Whatever the first run reached, a rerun finishes with everything at its owner.
    const second = first.state === 'removed' ? first : await within(30_000, 'the rerun', runDrain(drainOptions(pool, src.address)))
    assert.equal(second.state, 'removed', JSON.stringify({ ...first, preflight: undefined }))
    const where = await locateAll([src.address, a.address, b.address], keys)
    for (const [i, key] of keys.entries()) {
      const owner = real.get(pool.chainWithout(src.address, key)[0]!)!
      assert.deepEqual(where.get(key.toString('hex')), [owner], `${key}`)
      const got = (await getAll(await conns.get(owner), [key])).get(key.toString('hex'))!
      assert.equal(got.value.toString(), `v${i}`.padEnd(200, '.'))
      assert.equal(got.flags, i)
    }
  })

  it('a destination\'s links reset once mid-pass, back at once: the same run moves what failed in another pass (exit 0, no rerun)', async () => {
    const pool = await startPool(3, { hash: 'php-memcached-libketama', clients: 'pool-aware' })
    pools.push(pool)
    const [src, a, b] = pool.servers as [(typeof pool.servers)[0], (typeof pool.servers)[0], (typeof pool.servers)[0]]
    const pa = await startProxy(a.address)
    proxies.push(pa)
    writeFileSync(pool.file, JSON.stringify({ hash: 'php-memcached-libketama', clients: 'pool-aware', servers: [{ address: src.address }, { address: pa.address }, { address: b.address }] }))
    const keys = keysOf('reset:', 3000)
    await setAll(await conns.get(src.address), keys.map((key, i) => ({ key, value: Buffer.from(`v${i}`), flags: i })))
    // The reset comes with a third of the keys moved; the proxy accepts new connections at once,
    // so the destination is back long before the pass ends.
    let resetAt = -1
    const r = await within(
      30_000,
      'the drain',
      runDrain(
        drainOptions(pool, src.address, {
          rate: 3000,
          batchSize: 100,
          onEvent: (e) => {
            if (e.type === 'progress' && resetAt < 0 && e.tally.moved > 1000) {
              resetAt = e.tally.moved
              pa.dropAll()
            }
          },
        }),
      ),
    )
    assert.ok(resetAt > 0, 'the links were reset mid-pass')
    assert.equal(r.status, 0, JSON.stringify({ ...r, preflight: undefined }))
    assert.equal(r.state, 'removed')
    assert.equal(r.failed, 0)
    assert.ok(r.passes >= 2, `another pass moved what failed (passes ${r.passes})`)
    await assertPoolAgrees(pool, r, 0)
    // The pool names the proxy: its owner is reached through it.
    await assertAtOwners(pool, src.address, keys, (i) => `v${i}`, [src.address, pa.address, b.address])
  })

  it('copy hand-off rerun after a lost journal tail: identical copies found at the owner are kept, different (stale) ones are invalidated', async () => {
    const pool = await startPool(3, { hash: 'memjs' })
    pools.push(pool)
    const [src] = pool.servers as [(typeof pool.servers)[0]]
    const keys = keysOf('journal:', 400)
    await setAll(await conns.get(src.address), keys.map((key, i) => ({ key, value: Buffer.from(`new${i}`), flags: i })))
    // What a killed run left at the owners without a journal record: even keys an identical
    // copy, odd keys a copy of an older value (the source changed after that run copied it).
    for (const [i, key] of keys.entries()) {
      await setAll(await conns.get(pool.chainWithout(src.address, key)[0]!), [{ key, value: Buffer.from(i % 2 === 0 ? `new${i}` : `old${i}`), flags: i }])
    }
    const r = await within(30_000, 'the copy drain', runDrain(drainOptions(pool, src.address, { handoff: 'copy', waitForSwitch: () => Promise.resolve() })))
    assert.equal(r.state, 'removed', JSON.stringify({ ...r, preflight: undefined }))
    assert.equal(r.invalidated, keys.length / 2)
    await assertPoolAgrees(pool, r, 0)
    for (const [i, key] of keys.entries()) {
      const got = (await getAll(await conns.get(pool.chainWithout(src.address, key)[0]!), [key])).get(key.toString('hex'))
      if (i % 2 === 0) assert.equal(got?.value.toString(), `new${i}`, `${key}: the identical copy is kept`)
      else assert.equal(got, undefined, `${key}: the stale copy is gone`)
    }
  })

  it('an application writing and deleting through its placement (PoolClient) during the drain: nothing older than the last write, no deleted key back', async () => {
    const pool = await startPool(3, { hash: 'memjs', clients: 'pool-aware' })
    pools.push(pool)
    const [src] = pool.servers as [(typeof pool.servers)[0]]
    // The keys the source owns in the pool (an application deletes a key at its owner).
    const keys = keysOf('app:', 6000).filter((k) => pool.chainWithout('', k)[0] === src.address)
    await setAll(await conns.get(src.address), keys.map((key, i) => ({ key, value: Buffer.from(`orig${i}`), flags: i })))
    const client = await PoolClient.fromPoolFile(pool.file, { checkInterval: 0.2, report: false })
    /** Key hex → the last value written, or null once deleted. */
    const last = new Map<string, string | null>()
    let stop = false
    let ops = 0
    const app = (async () => {
      while (!stop) {
        // Two thirds of the keys see traffic; the rest stay untouched (they must all arrive).
        const i = Math.floor(Math.random() * Math.floor((keys.length * 2) / 3))
        const hex = keys[i]!.toString('hex')
        if (Math.random() < 0.3) {
          await client.delete(keys[i]!)
          last.set(hex, null)
        } else {
          const v = `w${ops}`
          await client.set(keys[i]!, v)
          last.set(hex, v)
        }
        ops++
        if (ops % 50 === 0) await sleep(1)
      }
    })()
    try {
      const r = await within(45_000, 'the drain under application traffic', runDrain(drainOptions(pool, src.address, { rate: 1000, batchSize: 100, clientGraceSeconds: 1 })))
      stop = true
      await app
      assert.equal(r.state, 'removed', JSON.stringify({ ...r, preflight: undefined }))
      assert.ok(ops > 300, `the application ran during the drain (${ops} operations)`)
      let untouched = 0
      for (const [i, key] of keys.entries()) {
        const hex = key.toString('hex')
        const owner = pool.chainWithout(src.address, key)[0]!
        const got = (await getAll(await conns.get(owner), [key])).get(hex)
        const want = last.has(hex) ? last.get(hex) : `orig${i}`
        if (want === null) assert.equal(got, undefined, `${key} was deleted and came back`)
        else if (got !== undefined) assert.equal(got.value.toString(), want, `${key}: stale value`)
        // A key nobody touched must not be lost.
        if (!last.has(hex)) {
          untouched++
          assert.ok(got !== undefined, `${key} (untouched) was lost`)
        }
      }
      assert.ok(untouched >= keys.length / 4, `${untouched} keys untouched`)
    } finally {
      stop = true
      await app.catch(() => undefined)
      await client.close()
    }
  })
})
