/**
 * State you can trust: a purge needs a transition that counted the server's keys, marking a
 * server that holds keys removed asks first, a progress save that fails stops the job before
 * anything is flushed, a refused job never puts its pre-mark file over someone's edit, and a
 * rebalance in progress shows in `status` and `pool show` with how to resume or go back.
 */
import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync, writeFileSync } from 'node:fs'
import { runDrain } from '../../src/core/jobs/drain.js'
import { runRebalance } from '../../src/core/jobs/rebalance.js'
import { markServer } from '../../src/core/pool/mark.js'
import { purgeServer } from '../../src/core/pool/purge.js'
import { itemCount } from '../../src/core/inspect/server-status.js'
import { rejectsWithCode } from '../helpers/assert.js'
import { runCli } from '../helpers/cli.js'
import { startMemcached } from '../helpers/memcached.js'
import { Conns, drainOptions, keysOf, setAll, startPool, type TestPool } from './drain.fixtures.js'
import { rebalanceOptions, seed } from './rebalance.fixtures.js'

describe('hand-off state', () => {
  const pools: TestPool[] = []
  const conns = new Conns()
  after(async () => {
    await conns.close()
    await Promise.all(pools.map((p) => p.stop()))
  })

  it('`mark S deactivating` then `purge S` is refused: nothing counted its keys (after a drain counted them, it purges)', async () => {
    const pool = await startPool(3)
    pools.push(pool)
    const src = pool.servers[0]!.address
    await setAll(await conns.get(src), keysOf('m:', 500).map((key) => ({ key, value: Buffer.from('v') })))
    await markServer(pool.store, src, 'deactivating')
    const err = await rejectsWithCode(purgeServer(pool.store, src, false), 'PURGE_REFUSED', 3)
    assert.match(err.message, /no drain has counted its keys/)
    assert.equal(await itemCount(src), 500, 'nothing flushed')
    assert.equal(pool.server(src).state, 'deactivating')
    // A drain counts them; then the purge goes through.
    const r = await runDrain(drainOptions(pool, src, { purge: false, handoff: 'move' }))
    assert.equal(r.status, 0)
    assert.ok(pool.server(src).transition?.countedAt !== undefined, 'the record says the keys were counted')
    const purged = await purgeServer(pool.store, src, false)
    assert.equal(purged.state, 'removed')
  })

  it('`mark S removed` on a server holding keys says how many become unreachable, and needs a yes', async () => {
    const pool = await startPool(3)
    pools.push(pool)
    const src = pool.servers[1]!.address
    await setAll(await conns.get(src), keysOf('r:', 321).map((key) => ({ key, value: Buffer.from('v') })))
    const err = await rejectsWithCode(markServer(pool.store, src, 'removed', { countKeys: itemCount }), 'MARK_REFUSED', 3)
    assert.match(err.message, /holds 321 key\(s\)/)
    assert.equal(pool.server(src).state, 'active')
    const cli = await runCli(['mark', src, 'removed', '--pool', pool.file, '--json'])
    assert.equal(cli.code, 2, 'no terminal to ask on and no --yes')
    assert.equal(pool.server(src).state, 'active')
    const yes = await runCli(['mark', src, 'removed', '--pool', pool.file, '--yes', '--json'])
    assert.equal(yes.code, 0, yes.stderr)
    assert.equal(yes.json.result.unreachableKeys, 321)
    assert.equal(pool.server(src).state, 'removed')
  })

  it('a progress save that fails (the pool file edited during a move drain) stops the job: exit 3, nothing flushed, the edit kept', async () => {
    const pool = await startPool(3, { hash: 'php-memcached-libketama', clients: 'pool-aware' })
    pools.push(pool)
    const src = pool.servers[0]!.address
    // The token bucket lets a second's worth through at once: enough keys that the edit lands mid-move.
    const keys = keysOf('s:', 6000)
    await setAll(await conns.get(src), keys.map((key) => ({ key, value: Buffer.from('value') })))
    let edited = false
    const err = await rejectsWithCode(
      runDrain(
        drainOptions(pool, src, {
          rate: 1500,
          batchSize: 50,
          checkpointIntervalMs: 200,
          onEvent: (e) => {
            if (e.type === 'progress' && !edited && e.tally.moved > 0) {
              edited = true
              // Someone edits the file by hand (a new comment-like field is not allowed, so a weight).
              const doc = JSON.parse(readFileSync(pool.file, 'utf8')) as { servers: { address: string; weight?: number }[] }
              doc.servers[2]!.weight = 2
              writeFileSync(pool.file, JSON.stringify(doc, null, 2))
            }
          },
        }),
      ),
      'POOL_CHANGED',
      3,
    )
    assert.match(err.message, /progress could not be saved/)
    assert.ok(edited)
    const left = (await itemCount(src)) ?? -1
    assert.ok(left > 0 && left < keys.length, `stopped mid-move, nothing flushed (${left} left)`)
    assert.equal(pool.pool().servers[2]!.weight, 2, 'the edit is kept')
    assert.equal(pool.server(src).state, 'deactivating', 'the record stays for a rerun')
    // Once the operator is done editing, a rerun resumes and finishes.
    const again = await runDrain(drainOptions(pool, src))
    assert.equal(again.status, 0)
    assert.equal(again.state, 'removed')
  })

  it('a drain refused after its mark does not put the pre-mark file over an edit made meanwhile', async () => {
    const pool = await startPool(2, { clients: 'pool-aware', server: (i) => (i === 1 ? { memoryMb: 8 } : {}) })
    pools.push(pool)
    const [src] = pool.servers.map((s) => s.address) as [string]
    await setAll(await conns.get(src), keysOf('big:', 4000).map((key) => ({ key, value: Buffer.alloc(3000, 0x61) })))
    const untouched = readFileSync(pool.file, 'utf8')
    // Refused (NO_ROOM) with nothing edited: the file is given back exactly.
    await rejectsWithCode(runDrain(drainOptions(pool, src)), 'NO_ROOM', 3)
    assert.equal(readFileSync(pool.file, 'utf8'), untouched)
    // Refused after someone edited the file since the mark: their edit stays.
    await rejectsWithCode(
      runDrain(
        drainOptions(pool, src, {
          onEvent: (e) => {
            if (e.type === 'marked' && e.state === 'deactivating') {
              const doc = JSON.parse(readFileSync(pool.file, 'utf8')) as { replicas: number; servers: { weight?: number }[] }
              doc.servers[1]!.weight = 3
              writeFileSync(pool.file, JSON.stringify(doc, null, 2))
            }
          },
        }),
      ),
      'NO_ROOM',
      3,
    )
    assert.equal(pool.pool().servers[1]!.weight, 3, 'the edit made meanwhile is kept')
  })

  it('`status` and `pool show` show a rebalance in progress (servers, hand-off, phase, resume, --abort), and nothing once it is done', async () => {
    const pool = await startPool(3, { hash: 'php-memcached-libketama' })
    pools.push(pool)
    const spare = await startMemcached()
    try {
      await seed(conns, pool.pool(), 600)
      let release!: () => void
      let waiting!: () => void
      const isWaiting = new Promise<void>((resolve) => (waiting = resolve))
      const job = runRebalance(
        rebalanceOptions(pool, { add: [spare.address] }, {
          handoff: 'copy',
          waitForSwitch: () => {
            waiting()
            return new Promise<void>((resolve) => (release = resolve))
          },
        }),
      )
      await isWaiting
      for (const args of [['pool', 'show'], ['status']]) {
        const r = await runCli([...args, '--pool', pool.file, '--json'])
        assert.equal(r.code, 0, r.stderr)
        const c = r.json.result.change
        assert.equal(c?.kind, 'rebalance', `${args.join(' ')}: ${JSON.stringify(r.json.result)}`)
        assert.deepEqual(c.added, [spare.address])
        assert.equal(c.handoff, 'copy')
        assert.equal(c.phase, 'copying')
        assert.equal(c.resume, 'memdrain rebalance')
        assert.equal(c.abort, 'memdrain rebalance --abort')
        const text = await runCli([...args, '--pool', pool.file])
        assert.match(text.stdout, /rebalance in progress \(\+127\.0\.0\.1:\d+; copy hand-off, phase copying/)
      }
      release()
      const r = await job
      assert.equal(r.status, 0)
      for (const args of [['pool', 'show'], ['status']]) {
        const after = await runCli([...args, '--pool', pool.file, '--json'])
        assert.equal(after.json.result.change, undefined)
      }
    } finally {
      await spare.kill()
    }
  })
})
