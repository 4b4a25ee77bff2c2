import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { runDrain } from '../../src/core/jobs/drain.js'
import { copyJournalFile } from '../../src/core/handoff/copy-journal.js'
import { Conns, deleteAll, drainOptions, getAll, keysOf, setAll, startPool, stat, type TestPool } from './drain.fixtures.js'

/** Copy hand-off (static clients): copy, switch, catch up, purge. */

describe('drain (copy hand-off)', () => {
  const pools: TestPool[] = []
  const conns = new Conns()
  after(async () => {
    await conns.close()
    await Promise.all(pools.map((p) => p.stop()))
  })

  /** What the new owner of each key holds: key → value (absent keys missing). */
  async function atNewOwners(pool: TestPool, src: string, keys: Buffer[]): Promise<Map<string, string>> {
    const out = new Map<string, string>()
    for (const key of keys) {
      const owner = pool.chainWithout(src, key)[0]!
      const got = (await getAll(await conns.get(owner), [key])).get(key.toString('hex'))
      if (got !== undefined) out.set(key.toString(), got.value.toString())
    }
    return out
  }

  it('catches up writes made on the source between the copy and the switch; deleted keys do not come back', async () => {
    const pool = await startPool(3, { hash: 'php-memcached-libketama' })
    pools.push(pool)
    const [src] = pool.servers.map((s) => s.address) as [string]
    const keys = keysOf('k', 1000)
    const source = await conns.get(src)
    await setAll(source, keys.map((key) => ({ key, value: Buffer.from('v1'), flags: 1 })))
    const fresh = keysOf('fresh', 20)
    let switchCalls = 0
    const follows: { state: string; message: string }[] = []
    const r = await runDrain(
      drainOptions(pool, src, {
        handoff: 'copy',
        onEvent: (e) => {
          if (e.type === 'follow') follows.push(e)
        },
        waitForSwitch: async (ctx) => {
          switchCalls++
          assert.equal(ctx.source, src)
          assert.equal(ctx.destinations.length, 2)
          // The applications, still on the old server list, keep writing the source until they switch.
          await setAll(source, keys.slice(0, 100).map((key) => ({ key, value: Buffer.from('v2'), flags: 2, ttl: 500 })))
          await deleteAll(source, keys.slice(100, 200))
          await setAll(source, fresh.map((key) => ({ key, value: Buffer.from('new') })))
        },
      }),
    )
    assert.equal(switchCalls, 1)
    assert.equal(r.status, 0, JSON.stringify(r.samples))
    assert.equal(r.handoff, 'copy')
    // The follower and the catch-up may each re-write a changed key once (the same value).
    assert.ok(r.caughtUp >= 100 && r.caughtUp <= 200, `caught up ${r.caughtUp}`)
    // The 100 deleted keys; the follower may also have journaled possible copies of the fresh keys
    // (written during the switch wait), which the catch-up checks and deletes: at most 20 more.
    assert.ok(r.invalidated >= 100 && r.invalidated <= 120, `invalidated ${r.invalidated}`)
    // The follower ran; before memcached 1.6.20 it does not see deletions (the fallback): the
    // catch-up's CAS comparison found the 100 deleted keys, not the follower.
    assert.equal(follows[0]?.state, 'on', JSON.stringify(follows))
    const version = (await source.version()).split('.').map(Number)
    if (version[0] === 1 && (version[1]! < 6 || (version[1] === 6 && version[2]! < 20))) {
      assert.match(follows[0]!.message, /deletions are not streamed/)
      assert.ok(r.invalidated - (r.followed?.invalidated ?? 0) >= 100, `the catch-up invalidated the deleted keys: ${JSON.stringify(r.followed)}`)
    }
    assert.equal(r.state, 'removed')
    assert.equal(r.purged, true)
    const held = await atNewOwners(pool, src, [...keys, ...fresh])
    for (const [i, key] of keys.entries()) {
      const v = held.get(key.toString())
      if (i < 100) assert.equal(v, 'v2', `${key} was caught up`)
      else if (i < 200) assert.equal(v, undefined, `${key} was deleted before the switch and must not come back`)
      else assert.equal(v, 'v1')
    }
    // Written at the source after the last copy pass: not copied after the switch, where an
    // application's delete at the new owner could not be told from "not copied yet".
    for (const key of fresh) assert.equal(held.get(key.toString()), undefined, `${key} appeared after the last copy pass`)
    const k0 = (await getAll(await conns.get(pool.chainWithout(src, keys[0]!)[0]!), [keys[0]!])).get(keys[0]!.toString('hex'))!
    assert.equal(k0.flags, 2)
    assert.ok(Math.abs(k0.ttl - 500) <= 3, `TTL ${k0.ttl}`)
    assert.equal((await getAll(source, [...keys, ...fresh])).size, 0, 'the drained server is flushed')
    assert.equal(existsSync(copyJournalFile(drainOptions(pool, src).spoolDir, pool.store.location, src)), false, 'the journal is deleted')
  })

  it('never overwrites a destination the applications wrote after the switch', async () => {
    const pool = await startPool(2)
    pools.push(pool)
    const [src, dest] = pool.servers.map((s) => s.address) as [string, string]
    const keys = keysOf('app', 20)
    const source = await conns.get(src)
    await setAll(source, keys.map((key) => ({ key, value: Buffer.from('old') })))
    const r = await runDrain(
      drainOptions(pool, src, {
        handoff: 'copy',
        waitForSwitch: async () => {
          // Before the switch some instances still write the source, and switched ones the destination.
          await setAll(source, keys.slice(0, 10).map((key) => ({ key, value: Buffer.from('source-late') })))
          await setAll(await conns.get(dest), keys.slice(5, 15).map((key) => ({ key, value: Buffer.from('app-new') })))
        },
      }),
    )
    assert.equal(r.status, 0)
    const held = await atNewOwners(pool, src, keys)
    for (const [i, key] of keys.entries()) {
      const v = held.get(key.toString())
      if (i < 5) assert.equal(v, 'source-late', `${key}: only the source changed: caught up`)
      // Both sides changed: the application's later write at the destination stays (the follower
      // refreshed the copy before it), or, if the catch-up met both changes, the copy is invalidated.
      else if (i < 10) assert.ok(v === undefined || v === 'app-new', `${key}: both sides changed: ${v}`)
      else if (i < 15) assert.equal(v, 'app-new', `${key}: the application's write stays`)
      else assert.equal(v, 'old')
    }
    assert.ok(r.caughtUp >= 5, `caught up ${r.caughtUp}`)
  })

  it('leaves no stale value with a writer on the old owner until the switch, then on the new one', async () => {
    const pool = await startPool(3, { hash: 'memjs' })
    pools.push(pool)
    const [src] = pool.servers.map((s) => s.address) as [string]
    const keys = keysOf('w', 2000)
    await setAll(await conns.get(src), keys.map((key) => ({ key, value: Buffer.from('original') })))
    const last = new Map<string, string>()
    let switched = false
    let stop = false
    let writes = 0
    let inFlight: Promise<void> = Promise.resolve()
    const writer = (async () => {
      const wconns = new Conns()
      try {
        while (!stop) {
          const key = keys[Math.floor(Math.random() * keys.length)]!
          const value = `w${writes++}`
          // A static client: the old server list until the switch, the new one after.
          const to = switched ? pool.chainWithout(src, key)[0]! : src
          inFlight = setAll(await wconns.get(to), [{ key, value: Buffer.from(value) }])
          await inFlight
          last.set(key.toString(), value)
          if (writes % 20 === 0) await sleep(1)
        }
      } finally {
        await wconns.close()
      }
    })()
    const r = await runDrain(
      drainOptions(pool, src, {
        handoff: 'copy',
        rate: 1000,
        batchSize: 100,
        waitForSwitch: async () => {
          switched = true
          await inFlight // the last write to the old server has landed
        },
      }),
    )
    await sleep(100)
    stop = true
    await writer
    assert.equal(r.status, 0, JSON.stringify(r.samples))
    assert.ok(writes > 500, `the writer ran (${writes} writes)`)
    assert.ok(r.caughtUp > 0, 'some copies were caught up')
    const held = await atNewOwners(pool, src, keys)
    for (const key of keys) {
      const v = held.get(key.toString())
      if (v !== undefined) assert.equal(v, last.get(key.toString()) ?? 'original', `${key}: stale value`)
    }
  })

  it('resumes an interrupted copy with its journal: earlier copies are caught up, not lost or resurrected', async () => {
    const pool = await startPool(3, { hash: 'pylibmc-ketama' })
    pools.push(pool)
    const [src] = pool.servers.map((s) => s.address) as [string]
    const keys = keysOf('j', 3000)
    const source = await conns.get(src)
    await setAll(source, keys.map((key) => ({ key, value: Buffer.from('v1') })))
    const ac = new AbortController()
    let switches = 0
    // Interrupted mid-copy (event-driven: a loaded machine may take long to start copying).
    const first = await runDrain(
      drainOptions(pool, src, {
        handoff: 'copy',
        rate: 1000,
        batchSize: 100,
        signal: ac.signal,
        onEvent: (e) => e.type === 'progress' && e.tally.moved >= 300 && ac.abort(),
        waitForSwitch: async () => void switches++,
      }),
    )
    assert.equal(first.status, 69)
    assert.equal(switches, 0, 'no switch before the copy is done')
    const journal = copyJournalFile(drainOptions(pool, src).spoolDir, pool.store.location, src)
    assert.ok(existsSync(journal), 'the journal survives the interruption')
    const copiedFirst = pool.server(src).transition!.moved
    assert.ok(copiedFirst > 0 && copiedFirst < 3000, `copied ${copiedFirst}`)

    // Between the runs the applications (still on the old list) change and delete keys, copied or not.
    await setAll(source, keys.filter((_, i) => i % 3 === 0).map((key) => ({ key, value: Buffer.from('v2') })))
    await deleteAll(source, keys.filter((_, i) => i % 3 === 1))

    const second = await runDrain(drainOptions(pool, src, { handoff: 'copy', waitForSwitch: async () => void switches++ }))
    assert.equal(second.status, 0, JSON.stringify(second.samples))
    assert.equal(second.resumed, true)
    assert.equal(switches, 1)
    assert.ok(second.caughtUp > 0 && second.invalidated > 0, `caught up ${second.caughtUp}, invalidated ${second.invalidated}`)
    assert.ok(second.moved <= 3000, `no key copied twice (moved ${second.moved})`)
    const held = await atNewOwners(pool, src, keys)
    for (const [i, key] of keys.entries()) {
      const v = held.get(key.toString())
      if (i % 3 === 0) assert.equal(v, 'v2', `${key}`)
      else if (i % 3 === 1) assert.equal(v, undefined, `${key} was deleted`)
      else assert.equal(v, 'v1', `${key}`)
    }
    assert.equal(existsSync(journal), false, 'the journal is deleted once the drain is done')
  })

  it('does not switch below the threshold: 68, journal and record kept', async () => {
    const pool = await startPool(2, { server: (i) => (i === 0 ? { itemSizeMax: '2m' } : {}) })
    pools.push(pool)
    const [src] = pool.servers.map((s) => s.address) as [string]
    await setAll(await conns.get(src), [...keysOf('s', 10).map((key) => ({ key, value: Buffer.from('x') })), { key: Buffer.from('huge'), value: Buffer.alloc(1500 * 1024) }])
    let switches = 0
    const r = await runDrain(drainOptions(pool, src, { handoff: 'copy', threshold: 1, waitForSwitch: async () => void switches++ }))
    assert.equal(r.status, 68)
    assert.equal(switches, 0)
    assert.equal(r.state, 'deactivating')
    assert.equal(pool.server(src).transition?.switchedAt, undefined)
    assert.ok(existsSync(copyJournalFile(drainOptions(pool, src).spoolDir, pool.store.location, src)))
    assert.equal(await stat(src, 'curr_items'), 11, 'not purged')

    // Its copies may be stale by now: resuming with the move hand-off (which would keep them) is refused.
    await assert.rejects(runDrain(drainOptions(pool, src, { handoff: 'move' })), (err: Error & { code?: string; exitCode?: number }) => {
      assert.equal(err.code, 'HANDOFF_CHANGED')
      assert.equal(err.exitCode, 2)
      return true
    })
  })

  it('resumes after the switch without switching again: straight to the catch-up', async () => {
    const pool = await startPool(3, { hash: 'php-memcache-consistent-crc32' })
    pools.push(pool)
    const [src] = pool.servers.map((s) => s.address) as [string]
    const keys = keysOf('after', 300)
    const source = await conns.get(src)
    await setAll(source, keys.map((key) => ({ key, value: Buffer.from('v1') })))
    const ac = new AbortController()
    let switches = 0
    const first = await runDrain(
      drainOptions(pool, src, {
        handoff: 'copy',
        signal: ac.signal,
        waitForSwitch: async () => {
          switches++
          await setAll(source, keys.slice(0, 30).map((key) => ({ key, value: Buffer.from('v2') })))
          await deleteAll(source, keys.slice(30, 60))
          ac.abort() // interrupted right after the switch
        },
      }),
    )
    // Once switched the catch-up runs to its end in the same process; the purge waits for a rerun.
    assert.equal(first.status, 69)
    assert.ok(pool.server(src).transition?.switchedAt, 'the switch is recorded')
    // The follower and the catch-up may each re-write a changed key once (the same value): at least 30, at most 60.
    assert.ok(first.caughtUp >= 30 && first.caughtUp <= 60, `caught up ${first.caughtUp}`)
    assert.equal(first.invalidated, 30)
    const check = async (): Promise<void> => {
      const held = await atNewOwners(pool, src, keys)
      for (const [i, key] of keys.entries()) assert.equal(held.get(key.toString()), i < 30 ? 'v2' : i < 60 ? undefined : 'v1', `${key}`)
    }
    await check()
    const second = await runDrain(drainOptions(pool, src, { handoff: 'copy', waitForSwitch: async () => void switches++ }))
    assert.equal(second.status, 0, JSON.stringify(second.samples))
    assert.equal(switches, 1, 'no second switch')
    assert.equal(second.state, 'removed')
    await check()
  })
})
