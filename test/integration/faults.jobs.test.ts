import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { assertKillScenarioClean, describeKillScenario as report, runKillScenario } from '../helpers/kill-scenario.js'
import { startMemcached, type MemcachedServer } from '../helpers/memcached.js'
import { parseVersioned, seedVersioned, startWorkload } from '../helpers/client-workload.js'
import { PoolClient } from '../../src/core/client/index.js'
import { poolPlacement } from '../../src/core/pool/placement.js'
import { runRebalance } from '../../src/core/jobs/rebalance.js'
import { runWarm } from '../../src/core/jobs/warm.js'
import { runMirror, type MirrorOptions } from '../../src/core/jobs/mirror.js'
import { MemdrainError } from '../../src/core/errors.js'
import { Conns, getAll, keysOf, locateAll, setAll, startPool, writesOn, type TestPool } from './drain.fixtures.js'
import { readPool, rebalanceOptions, seed } from './rebalance.fixtures.js'

/**
 * Faults around the jobs other than drain (faults.process/servers cover drain): kill -9 of the
 * rebalance CLI and reruns, an application writing and deleting through its placement during a
 * rebalance, a destination killed mid-rebalance, a peer killed mid-warm, the passive killed
 * mid-mirror. Bounded: short key sets, modest rates, destination waits shortened.
 */

/** Runs `onMoved` once, the first time a progress event reports at least `n` keys handed over. */
function onceMoved(n: number, onMoved: () => void): (e: { type: string; tally?: { moved: number } }) => void {
  let fired = false
  return (e) => {
    if (fired || e.type !== 'progress' || (e.tally?.moved ?? 0) < n) return
    fired = true
    onMoved()
  }
}

describe('faults: rebalance, warm, mirror', () => {
  const pools: TestPool[] = []
  const spares: MemcachedServer[] = []
  const conns = new Conns()
  after(async () => {
    await conns.close()
    await Promise.all([...pools.map((p) => p.stop()), ...spares.map((s) => s.kill())])
  })

  for (const handoff of ['move', 'copy'] as const) {
    it(`kill -9 of \`memdrain rebalance\` (${handoff} hand-off) at random moments: reruns finish, pool file valid after every kill, nothing lost, stale or left on a non-owner`, async () => {
      const seedBase = Number(process.env.MEMDRAIN_FAULT_SEED ?? Date.now() % 100000)
      const r = await runKillScenario({
        seed: seedBase + (handoff === 'move' ? 11 : 12),
        job: 'rebalance',
        handoff,
        kills: 2,
        // The copy hand-off moves only the keys the added server takes (~1/5): fewer per second, so kills land mid-job.
        keys: handoff === 'move' ? 3000 : 4000,
        rate: handoff === 'move' ? 400 : 250,
        minMs: 300,
        maxMs: 1800,
        log: (l) => process.stderr.write(`${l}\n`),
      })
      process.stderr.write(`kill scenario (rebalance ${handoff}): ${r.kills} kills, ${r.runs} runs, lost ${r.lost}, stale ${r.stale}, misplaced ${r.misplaced}\n`)
      assert.ok(r.kills >= 1, report(r))
      assert.ok(r.staleLockTakeovers >= 1 || r.killedDuring.every((k) => /before any output/.test(k)), `a lock left by a killed run was taken over: ${report(r)}`)
      // misplaced 0: with the copy hand-off, the copies left on servers that stay (keys the added one took) are gone.
      assertKillScenarioClean(r, 'finished')
    })
  }

  it('an application writing and deleting through PoolClient during a rebalance 3→4 (move hand-off): no value older than the last acknowledged write, no deleted key back', async () => {
    const pool = await startPool(3, { hash: 'php-memcached-libketama', clients: 'pool-aware' })
    pools.push(pool)
    const spare = await startMemcached()
    spares.push(spare)
    const client = await PoolClient.fromPoolFile(pool.file, { checkInterval: 0.2, report: false })
    const keys = Array.from({ length: 2400 }, (_, i) => `app:${i}`)
    const doomed = Array.from({ length: 600 }, (_, i) => `del:${i}`)
    try {
      await seedVersioned(client, [...keys, ...doomed], 20)
      const workload = startWorkload({ client, keys, tracked: new Set(), concurrency: 6, writeShare: 0.4, valueBytes: 20, windowMs: 1000, opsPerSecond: 1500, seed: 7 })
      // The deleter: each deleted key must never be read again (through the client), during or after.
      const deleted = new Set<string>()
      const resurrected: string[] = []
      let stopDeleting = false
      const deleter = (async () => {
        for (const k of doomed) {
          if (stopDeleting) break
          await client.delete(k)
          deleted.add(k)
          const back = [...deleted][Math.floor(Math.random() * deleted.size)]!
          if ((await client.get(back)) !== undefined) resurrected.push(back)
          await sleep(3)
        }
      })()
      const r = await runRebalance(rebalanceOptions(pool, { add: [spare.address] }, { handoff: 'move', rate: 500, batchSize: 100, clientGraceSeconds: 1 }))
      const deletedDuring = deleted.size
      stopDeleting = true
      await deleter
      const w = await workload.stop()
      assert.equal(r.status, 0, JSON.stringify({ ...r, plan: undefined, samples: r.samples.slice(0, 3) }))
      assert.ok(r.moved > 200, `keys moved while the application ran (${r.moved})`)
      assert.ok(w.writes > 300 && deletedDuring > 50, `the application wrote (${w.writes}) and deleted (${deletedDuring}) during the rebalance`)
      assert.equal(w.stale, 0, w.staleSamples.join('\n'))
      assert.equal(w.foreign, 0, w.staleSamples.join('\n'))
      assert.deepEqual(resurrected, [], 'deleted keys read back through the client')
      // Afterwards, on the servers: each key only at its owner under the new pool, holding the
      // last acknowledged version; each deleted key nowhere, each other doomed key still version 1.
      const after = readPool(pool.file)
      assert.equal(after.rebalance, undefined)
      const pp = poolPlacement(after)
      const all = [...pool.servers.map((s) => s.address), spare.address]
      const where = await locateAll(all, [...keys, ...doomed].map((k) => Buffer.from(k)))
      for (const k of [...keys, ...doomed]) {
        const hex = Buffer.from(k).toString('hex')
        if (deleted.has(k)) {
          assert.equal(where.get(hex), undefined, `${k} was deleted and came back on ${String(where.get(hex))}`)
          continue
        }
        const owner = pp.servers[pp.placement.owner(Buffer.from(k))]!.address
        assert.deepEqual(where.get(hex), [owner], `${k} at ${String(where.get(hex))}, owner ${owner}`)
        const got = (await getAll(await conns.get(owner), [Buffer.from(k)])).get(hex)!
        const v = parseVersioned(got.value.toString())
        assert.equal(v?.key, k)
        const acked = w.acked.get(k) ?? 1
        // A write that errored may or may not have landed: then anything from the acknowledged version up.
        if (w.errors === 0) assert.equal(v?.version, acked, `${k}: version ${v?.version}, last acknowledged ${acked}`)
        else assert.ok((v?.version ?? 0) >= acked, `${k}: version ${v?.version} older than the acknowledged ${acked}`)
      }
    } finally {
      await client.close()
    }
  })

  it('a destination killed mid-rebalance: exit 68 with failed keys; after it restarts, a rerun completes (exit 0)', async () => {
    const pool = await startPool(4, { hash: 'php-memcached-libketama', clients: 'pool-aware' })
    pools.push(pool)
    const [leaving, , , victim] = pool.servers as [MemcachedServer, MemcachedServer, MemcachedServer, MemcachedServer]
    const before = readPool(pool.file)
    const items = await seed(conns, before, 3000, 'dk:')
    const r = await runRebalance(
      // rate 300: the leaving server's ~750 keys take a few progress reports (the move starts with the dump).
      rebalanceOptions(pool, { remove: [leaving.address] }, { handoff: 'move', rate: 300, batchSize: 100, downWaitMs: 1000, onEvent: onceMoved(150, () => void victim.kill()) }),
    )
    assert.equal(r.status, 68, JSON.stringify({ ...r, plan: undefined }))
    assert.ok(r.failed > 0, 'failed keys counted')
    assert.ok((r.failedBy['destination-down'] ?? 0) + (r.failedBy['destination-error'] ?? 0) > 0, JSON.stringify(r.failedBy))
    assert.equal(r.finished, false)
    assert.notEqual(readPool(pool.file).rebalance, undefined, 'the record stays for the rerun')
    const lostWithVictim = r.destinations.find((d) => d.address === victim.address)!.keys
    await victim.restart()
    const again = await runRebalance(rebalanceOptions(pool, { remove: [leaving.address] }, { handoff: 'move' }))
    assert.equal(again.status, 0, JSON.stringify({ ...again, plan: undefined }))
    assert.equal(again.finished, true)
    const after = readPool(pool.file)
    assert.equal(after.servers.find((s) => s.address === leaving.address)?.state, 'removed')
    const pp = poolPlacement(after)
    const where = await locateAll(pool.servers.map((s) => s.address), items.map((it) => it.key))
    let missing = 0
    for (const it of items) {
      const hex = it.key.toString('hex')
      const owner = pp.servers[pp.placement.owner(it.key)]!.address
      const at = where.get(hex)
      if (at === undefined) {
        // Keys the victim held when it died (its own and those moved to it) died with it.
        assert.equal(owner, victim.address, `${it.key} lost at ${owner}`)
        missing++
        continue
      }
      assert.deepEqual(at, [owner], `${it.key}`)
      const got = (await getAll(await conns.get(owner), [it.key])).get(hex)!
      assert.deepEqual(got.value, it.value)
      assert.equal(got.flags, it.flags)
    }
    const was = poolPlacement(before)
    const victimOwnedBefore = items.filter((it) => was.servers[was.placement.owner(it.key)]!.address === victim.address).length
    assert.ok(missing <= victimOwnedBefore + lostWithVictim, `missing ${missing} ≤ what the victim held ${victimOwnedBefore} + moved to it ${lostWithVictim}`)
  })

  it('warm: a peer killed mid-warm → exit 68 naming it unreachable, peers never written; a rerun after its restart completes', async () => {
    const pool = await startPool(4, { hash: 'php-memcached-libketama', replicas: 2 })
    pools.push(pool)
    const target = pool.servers[0]!
    const items = await seed(conns, readPool(pool.file), 3000, 'wk:')
    await target.restart()
    const peers = pool.servers.slice(1)
    let victim: MemcachedServer | undefined
    const writesBefore = new Map(await Promise.all(peers.map(async (p) => [p.address, await writesOn(p.address)] as const)))
    const opts = {
      store: pool.store,
      server: target.address,
      threshold: 0.95,
      rate: 400,
      bandwidth: 0,
      minTtl: 2,
      minFree: 0.1,
      allowEvictions: false,
      order: 'hot-first' as const,
      spoolDir: path.join(pool.dir, 'spool'),
      batchSize: 100,
    }
    const read: string[] = []
    const r = await runWarm({
      ...opts,
      onEvent: (e) => {
        if (e.type === 'peer') read.push(e.peer)
        // Kill the second peer once keys are being copied (every peer is read at once, under one --rate).
        if (e.type === 'progress' && victim === undefined && e.tally.moved >= 50) {
          victim = peers[1]!
          void victim.kill()
        }
      },
    }).catch((err: unknown) => {
      throw new Error(`runWarm threw instead of reporting the dead peer: ${(err as Error).message}`)
    })
    assert.ok(victim !== undefined, 'the second peer was killed mid-copy')
    assert.equal(r.status, 68, JSON.stringify(r))
    assert.deepEqual(r.unreachablePeers, [victim.address])
    // The other peers were still read.
    assert.deepEqual([...read].sort(), peers.map((p) => p.address).sort())
    assert.ok(r.restored > 0)
    for (const p of peers) {
      if (p === victim) continue
      assert.equal(await writesOn(p.address), writesBefore.get(p.address), `warm wrote to the peer ${p.address}`)
    }
    await victim.restart()
    const again = await runWarm(opts)
    assert.equal(again.status, 0, JSON.stringify(again))
    assert.deepEqual(again.unreachablePeers, [])
    // Every key whose chain includes the target and whose other holder survived is at the target.
    const pp = poolPlacement(readPool(pool.file))
    const atTarget = await getAll(await conns.get(target.address), items.map((it) => it.key))
    let expected = 0
    for (const it of items) {
      const chain = pp.placement.chain(it.key, 2).map((i) => pp.servers[i]!.address)
      if (!chain.includes(target.address) || chain.includes(victim.address)) continue
      expected++
      const got = atTarget.get(it.key.toString('hex'))
      assert.ok(got, `${it.key} not restored`)
      assert.deepEqual(got.value, it.value)
    }
    assert.ok(expected > 100)
  })

  /** Options of a mirror of 3000 keys between two fresh servers, the passive killed after 200 copies. */
  async function mirrorSetup(): Promise<{ active: MemcachedServer; passive: MemcachedServer; keys: Buffer[]; activeWrites: number; opts: MirrorOptions }> {
    const [active, passive] = await Promise.all([startMemcached(), startMemcached()])
    spares.push(active, passive)
    const keys = keysOf('mir:', 3000)
    await setAll(await conns.get(active.address), keys.map((key, i) => ({ key, value: Buffer.from(`v${i}`), flags: i })))
    const opts: MirrorOptions = {
      active: active.address,
      passive: passive.address,
      intervalSeconds: 0.2,
      once: true,
      delete: false,
      rate: 1000,
      bandwidth: 0,
      minTtl: 2,
      minFree: 0.1,
      allowEvictions: false,
      order: 'hot-first',
      spoolDir: mkdtempSync(path.join(tmpdir(), 'memdrain-mirror-fault-')),
      batchSize: 100,
      downWaitMs: 500,
      onEvent: onceMoved(200, () => void passive.kill()),
    }
    return { active, passive, keys, activeWrites: await writesOn(active.address), opts }
  }

  it('mirror --once: the passive killed mid-pass → exit 3 (PASSIVE_UNREACHABLE) naming it; nothing written to the active', async () => {
    const { active, passive, keys, activeWrites, opts } = await mirrorSetup()
    const err = await runMirror(opts).then(
      (r) => assert.fail(`runMirror returned ${JSON.stringify(r)} with the passive dead`),
      (e: unknown) => e,
    )
    assert.ok(err instanceof MemdrainError, String(err))
    assert.equal(err.code, 'PASSIVE_UNREACHABLE', err.message)
    assert.equal(err.exitCode, 3)
    assert.match(err.message, new RegExp(`passive ${passive.address}`))
    assert.match(err.suggestions.join(' '), /run the mirror again/)
    assert.equal(await writesOn(active.address), activeWrites, 'nothing written to the active')
    assert.equal((await getAll(await conns.get(active.address), keys)).size, keys.length)
  })

  it('continuous mirror: the passive killed mid-pass and restarted (empty) → the mirror waits, then copies everything again', async () => {
    const { active, passive, keys, activeWrites, opts } = await mirrorSetup()
    const events: string[] = []
    const kill = opts.onEvent!
    const r = await runMirror({
      ...opts,
      once: false,
      maxPasses: 2,
      onEvent: (e) => {
        kill(e)
        if (e.type === 'mirror-passive-down') {
          events.push('down')
          setTimeout(() => void passive.restart(), 500)
        }
        if (e.type === 'mirror-passive-back') events.push('back')
      },
    })
    assert.deepEqual(events, ['down', 'back'])
    assert.equal(r.status, 0)
    assert.equal(r.passes, 2)
    assert.equal(r.last?.copied, keys.length, 'the pass after the restart copies every key')
    const got = await getAll(await conns.get(passive.address), keys)
    assert.equal(got.size, keys.length)
    for (const [i, key] of keys.entries()) assert.equal(got.get(key.toString('hex'))?.value.toString(), `v${i}`)
    assert.equal(await writesOn(active.address), activeWrites, 'nothing written to the active')
  })
})
