import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { assertKillScenarioClean, describeKillScenario as report, runKillScenario } from '../helpers/kill-scenario.js'
import { REPO_ROOT, runCli } from '../helpers/cli.js'
import { Conns, getAll, keysOf, setAll, startPool, type TestPool } from './drain.fixtures.js'

/**
 * Faults of the memdrain process itself, through the built CLI: kill -9 at random moments
 * (dump, batches, catch-up, purge) and reruns; two drains on one pool file. The seed of each
 * kill scenario is printed, so a failure can be replayed with `npm run soak -- --seed N`.
 */

describe('faults: the memdrain process', () => {
  const pools: TestPool[] = []
  const conns = new Conns()
  after(async () => {
    await conns.close()
    await Promise.all(pools.map((p) => p.stop()))
  })

  it('kill -9 at random moments of a move drain: every rerun resumes (stale lock taken over), nothing lost or stale, pool file valid after every kill', async () => {
    const seed = Number(process.env.MEMDRAIN_FAULT_SEED ?? Date.now() % 100000)
    const r = await runKillScenario({ seed, handoff: 'move', kills: 3, keys: 4000, log: (l) => process.stderr.write(`${l}\n`) })
    process.stderr.write(`kill scenario (move): ${r.kills} kills, ${r.runs} runs, lost ${r.lost}, stale ${r.stale}, misplaced ${r.misplaced}\n`)
    assert.ok(r.kills >= 1, report(r))
    assert.ok(r.staleLockTakeovers >= 1 || r.killedDuring.every((k) => /before any output/.test(k)), `a lock left by a killed run was taken over: ${report(r)}`)
    assertKillScenarioClean(r, 'removed')
  })

  it('kill -9 at random moments of a copy drain (copy, switch, catch-up, purge): same guarantees', async () => {
    const seed = Number(process.env.MEMDRAIN_FAULT_SEED ?? Date.now() % 100000) + 1
    const r = await runKillScenario({ seed, handoff: 'copy', kills: 2, keys: 3000, log: (l) => process.stderr.write(`${l}\n`) })
    process.stderr.write(`kill scenario (copy): ${r.kills} kills, ${r.runs} runs, lost ${r.lost}, stale ${r.stale}, misplaced ${r.misplaced}\n`)
    assert.ok(r.kills >= 1, report(r))
    assertKillScenarioClean(r, 'removed')
  })

  it('a destination killed mid-drain: the others keep receiving, failed keys counted, exit 68; after it is back a rerun completes', async () => {
    const pool = await startPool(4, { clients: 'pool-aware' })
    pools.push(pool)
    const [src, , , victim] = pool.servers as [(typeof pool.servers)[0], (typeof pool.servers)[0], (typeof pool.servers)[0], (typeof pool.servers)[0]]
    const keys = keysOf('dest-kill:', 4000)
    await setAll(await conns.get(src.address), keys.map((key, i) => ({ key, value: Buffer.from(`v${i}`), flags: i })))
    const args = ['drain', src.address, '--pool', pool.file, '--yes', '--json', '--rate', '1500', '--client-grace', '0']
    const running = runCli(args)
    // Kill it once the drain is moving keys (the pool file says deactivating, moved > 0 or soon).
    for (let i = 0; i < 100 && pool.server(src.address).state !== 'deactivating'; i++) await sleep(50)
    await sleep(600)
    await victim.kill()
    const r = await running
    assert.equal(r.code, 68, r.stdout + r.stderr)
    const res = r.json.result
    assert.ok(res.failed > 0, 'failed keys counted')
    assert.ok((res.failedBy['destination-down'] ?? 0) + (res.failedBy['destination-error'] ?? 0) === res.failed, JSON.stringify(res.failedBy))
    const per = new Map<string, { keys: number; failed: number }>(res.destinations.map((d: { address: string; keys: number; failed: number }) => [d.address, d]))
    assert.ok(per.get(victim.address)!.failed > 0)
    for (const s of pool.servers.slice(1, 3)) assert.equal(per.get(s.address)!.failed, 0, `${s.address} kept receiving`)
    assert.equal(res.state, 'deactivating')
    assert.equal(pool.server(src.address).state, 'deactivating')
    await victim.restart()
    const again = await runCli(args)
    assert.equal(again.code, 0, again.stdout)
    assert.equal(again.json.result.state, 'removed')
    // Every key at its owner, except those the killed destination held when it died (lost with it).
    const lostWithVictim = per.get(victim.address)!.keys
    let missing = 0
    for (const [i, key] of keys.entries()) {
      const owner = pool.chainWithout(src.address, key)[0]!
      const got = (await getAll(await conns.get(owner), [key])).get(key.toString('hex'))
      if (got === undefined) {
        assert.equal(owner, victim.address, `${key} lost at ${owner}`)
        missing++
      } else assert.equal(got.value.toString(), `v${i}`)
    }
    assert.ok(missing <= lostWithVictim, `missing ${missing} ≤ moved to the victim before it died ${lostWithVictim}`)
  })

  it('two drains on one pool file: the second is refused (3, POOL_LOCKED naming the first pid) and changes nothing; the first finishes', async () => {
    const pool = await startPool(3, { clients: 'pool-aware' })
    pools.push(pool)
    const [src] = pool.servers as [(typeof pool.servers)[0]]
    const keys = keysOf('two:', 3000)
    await setAll(await conns.get(src.address), keys.map((key) => ({ key, value: Buffer.from('x'.repeat(50)) })))
    const first = spawn(process.execPath, [path.join(REPO_ROOT, 'bin/run.js'), 'drain', src.address, '--pool', pool.file, '--yes', '--json', '--rate', '1000', '--client-grace', '0'], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    first.stdout.on('data', (d: Buffer) => (out += d.toString()))
    const done = new Promise<number | null>((resolve) => first.on('close', (code) => resolve(code)))
    // Wait until it holds the lock.
    for (let i = 0; i < 100 && !existsSync(`${pool.file}.lock`); i++) await sleep(50)
    assert.ok(existsSync(`${pool.file}.lock`), 'the first drain took the lock')
    const before = readFileSync(pool.file)
    const second = await runCli(['drain', pool.servers[1]!.address, '--pool', pool.file, '--yes', '--json', '--handoff', 'move', '--force'])
    assert.equal(second.code, 3, second.stdout)
    assert.equal(second.json.error.code, 'POOL_LOCKED')
    assert.match(second.json.error.message, new RegExp(`pid ${first.pid}`))
    assert.match(second.json.error.message, /memdrain drain/)
    const after = readFileSync(pool.file)
    // The first drain may have saved progress meanwhile; the second server's entry is untouched.
    assert.equal(JSON.parse(after.toString()).servers[1].state ?? 'active', JSON.parse(before.toString()).servers[1].state ?? 'active')
    assert.equal(await done, 0, out)
    assert.equal(pool.server(src.address).state, 'removed')
    assert.equal(existsSync(`${pool.file}.lock`), false, 'lock released')
    const moved = new Map<string, unknown>()
    for (const s of pool.servers.slice(1)) for (const [k, v] of await getAll(await conns.get(s.address), keys)) moved.set(k, v)
    assert.equal(moved.size, keys.length)
  })
})
