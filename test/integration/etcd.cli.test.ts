/**
 * The CLI on an etcd pool: pool push / pull / show round trip, two drains racing for the
 * leased lock (one refused with exit 3 naming the other), a SIGKILLed drain's lock expiring and
 * the next drain saying whose it was, and etcd stopped mid-drain (exit 69, state safe, a rerun
 * finishes). Needs `npm run build`.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { EtcdPoolStore } from '../../src/core/pool/etcd-store.js'
import { runCli, REPO_ROOT } from '../helpers/cli.js'
import { startEtcd, type EtcdServer } from '../helpers/etcd.js'
import { connect, keysOf, locateAll, setAll, startPool, type TestPool } from './drain.fixtures.js'

const VALUE = Buffer.alloc(100, 'x')

describe('memdrain on an etcd pool (CLI)', () => {
  let etcd: EtcdServer
  const pools: TestPool[] = []
  before(async () => {
    etcd = await startEtcd()
  })
  after(async () => {
    await Promise.all(pools.map((p) => p.stop()))
    await etcd.remove()
  })

  /** A pool of `count` memcached servers in etcd under `prefix`, `keys` keys written on the first server. */
  async function etcdPool(prefix: string, keys: number): Promise<{ pool: TestPool; url: string; source: string; all: Buffer[] }> {
    const pool = await startPool(3, { clients: 'pool-aware' })
    pools.push(pool)
    const url = etcd.poolUrl(prefix)
    const pushed = await runCli(['pool', 'push', pool.file, '--pool', url, '--json'])
    assert.equal(pushed.code, 0, pushed.stdout + pushed.stderr)
    const source = pool.servers[0]!.address
    const all = keysOf(`${prefix}-k`, keys)
    const c = await connect(source)
    await setAll(c, all.map((key) => ({ key, value: VALUE })))
    await c.close()
    return { pool, url, source, all }
  }

  /** Every key at exactly its owner under the pool without `source`, none left on it. */
  async function assertDrained(pool: TestPool, source: string, all: Buffer[]): Promise<void> {
    const where = await locateAll(pool.servers.map((s) => s.address), all)
    let misplaced = 0
    for (const k of all) {
      const at = where.get(k.toString('hex')) ?? []
      if (at.length !== 1 || at[0] !== pool.chainWithout(source, k)[0]) misplaced++
    }
    assert.equal(misplaced, 0, `${misplaced} of ${all.length} keys are not (only) at their owner`)
  }

  function drainArgs(url: string, source: string, pool: TestPool, rate: number): string[] {
    return ['drain', source, '--pool', url, '--handoff', 'move', '--force', '--client-grace', '0', '--rate', String(rate), '--yes', '--json', '--spool-dir', path.join(pool.dir, 'spool')]
  }

  /** Runs the drain until it is not refused for the lock (a lock left behind expires with its lease, TTL 10 s). */
  async function drainOnceUnlocked(args: string[], since: number): Promise<Awaited<ReturnType<typeof runCli>>> {
    for (;;) {
      const r = await runCli(args, { timeoutMs: 60_000 })
      if (r.code !== 3 || r.json?.error?.code !== 'POOL_LOCKED') return r
      assert.ok(Date.now() - since < 20_000, 'a lock left behind did not expire within 20 s')
      await sleep(500)
    }
  }

  it('pool push / pull / show round trip, and mark through etcd', async () => {
    const pool = await startPool(2)
    pools.push(pool)
    const url = etcd.poolUrl('/memdrain/roundtrip')
    const original = JSON.parse(readFileSync(pool.file, 'utf8')) as { servers: { address: string }[] }
    const pushed = await runCli(['pool', 'push', pool.file, '--pool', url, '--json'])
    assert.equal(pushed.code, 0, pushed.stderr)
    assert.equal(pushed.json.result.replaced, false)
    const shown = await runCli(['pool', 'show', '--pool', url, '--json'])
    assert.equal(shown.code, 0, shown.stderr)
    assert.deepEqual(shown.json.result.pool.servers.map((s: { address: string }) => s.address), original.servers.map((s) => s.address))
    assert.equal(shown.json.result.revision, pushed.json.result.revision)

    const marked = await runCli(['mark', pool.servers[1]!.address, 'deactivating', '--pool', url, '--json'])
    assert.equal(marked.code, 0, marked.stderr)
    const pulled = await runCli(['pool', 'pull', '--pool', url])
    assert.equal(pulled.code, 0, pulled.stderr)
    const doc = JSON.parse(pulled.stdout) as { hash: string; servers: { address: string; state?: string }[] }
    assert.equal(doc.hash, 'memjs')
    assert.equal(doc.servers[1]!.state, 'deactivating')
    // -o writes the same document atomically; pushing it back replaces the pool on its revision.
    const out = path.join(pool.dir, 'pulled.json')
    const pulledFile = await runCli(['pool', 'pull', '--pool', url, '-o', out, '--json'])
    assert.equal(pulledFile.code, 0, pulledFile.stderr)
    assert.equal(readFileSync(out, 'utf8'), pulled.stdout)
    writeFileSync(out, pulled.stdout.replace('"deactivating"', '"active"'))
    const back = await runCli(['pool', 'push', out, '--pool', url, '--json'])
    assert.equal(back.code, 0, back.stderr)
    assert.equal(back.json.result.replaced, true)
    const human = await runCli(['pool', 'show', '--pool', url])
    assert.equal(human.code, 0)
    assert.match(human.stdout, /lock: free/)
    assert.doesNotMatch(human.stdout, /deactivating/)
    // A file pool is shown the same way.
    const fileShow = await runCli(['pool', 'show', '--pool', pool.file, '--json'])
    assert.equal(fileShow.json.result.location, pool.file)
  })

  it('two drains race for the lock: one is refused (exit 3) naming the other; a SIGKILLed holder\'s lock expires and the next drain says whose it was', async () => {
    const { pool, url, source, all } = await etcdPool('/memdrain/race', 6000)
    const spawnDrain = (): { child: ReturnType<typeof spawn>; done: Promise<{ code: number | null; stdout: string }> } => {
      const child = spawn(process.execPath, [path.join(REPO_ROOT, 'bin/run.js'), ...drainArgs(url, source, pool, 1000)], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
      let stdout = ''
      child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()))
      return { child, done: once(child, 'exit').then(([code]) => ({ code: code as number | null, stdout })) }
    }
    const a = spawnDrain()
    const b = spawnDrain()
    // The refused one exits first (at once); the winner runs ~6 s at 1000 keys/s.
    const first = await Promise.race([a.done.then((r) => ({ ...r, who: a, other: b })), b.done.then((r) => ({ ...r, who: b, other: a }))])
    assert.equal(first.code, 3, first.stdout)
    const refused = JSON.parse(first.stdout) as { error: { code: string; message: string } }
    assert.equal(refused.error.code, 'POOL_LOCKED')
    assert.match(refused.error.message, new RegExp(`\`memdrain drain ${source.replace(/\./g, '\\.')}\` \\(pid ${first.other.child.pid} on `))
    // The winner crashes mid-drain.
    await sleep(1500)
    assert.equal(first.other.child.exitCode, null, 'the winning drain is still running')
    const killedAt = Date.now()
    first.other.child.kill('SIGKILL')
    await first.other.done
    // The holder ran on this machine, in this PID namespace, and is gone: a rerun takes its lock at
    // once (a holder elsewhere would free it with its lease: etcd.store.test), says whose it was, and finishes.
    const rerun = await drainOnceUnlocked(drainArgs(url, source, pool, 0), killedAt)
    console.log(`# lock of the SIGKILLed drain taken over ${Date.now() - killedAt} ms after the kill (lease TTL 10 s)`)
    assert.equal(rerun.code, 0, rerun.stdout + rerun.stderr)
    assert.equal(rerun.json.result.state, 'removed')
    assert.equal(rerun.json.result.resumed, true)
    const warning = (rerun.json.warnings as string[]).find((w) => /took over the lock/.test(w))
    assert.ok(warning !== undefined, JSON.stringify(rerun.json.warnings))
    assert.match(warning, new RegExp(`pid ${first.other.child.pid} on .*no longer running on this host`))
    await assertDrained(pool, source, all)
  })

  it('etcd stopped mid-drain: the drain exits 69 with its keys safe; with etcd back a rerun finishes', async () => {
    const { pool, url, source, all } = await etcdPool('/memdrain/outage', 12_000)
    const started = Date.now()
    const running = runCli(drainArgs(url, source, pool, 1000), { timeoutMs: 60_000 })
    await sleep(2000)
    await etcd.kill()
    const killedAt = Date.now()
    const r = await running
    console.log(`# drain exited ${r.code} ${Date.now() - killedAt} ms after etcd was killed (${Date.now() - started} ms after it started)`)
    assert.equal(r.code, 69, r.stdout + r.stderr)
    assert.equal(r.json.error.code, 'INTERRUPTED')
    assert.match(r.json.error.message, /pool store became unreachable/)
    // Safe: every key is at exactly one place, its source or its new owner, never both.
    const where = await locateAll(pool.servers.map((s) => s.address), all)
    let onSource = 0
    for (const k of all) {
      const at = where.get(k.toString('hex')) ?? []
      assert.equal(at.length, 1, `key ${k.toString()} is at ${JSON.stringify(at)}`)
      if (at[0] === source) onSource++
      else assert.equal(at[0], pool.chainWithout(source, k)[0])
    }
    assert.ok(onSource < all.length, 'the drain had moved keys before etcd went away')
    await etcd.start()
    const store = new EtcdPoolStore(url)
    assert.equal((await store.load()).pool.servers[0]!.state, 'deactivating', 'the record left in etcd says the drain is in progress')
    store.close()
    // The interrupted drain could not release its lock (etcd was down): it goes with its lease.
    const restartedAt = Date.now()
    const rerun = await drainOnceUnlocked(drainArgs(url, source, pool, 0), restartedAt)
    console.log(`# rerun after the outage started ${Date.now() - restartedAt} ms after etcd came back`)
    assert.equal(rerun.code, 0, rerun.stdout + rerun.stderr)
    assert.equal(rerun.json.result.state, 'removed')
    assert.equal(rerun.json.result.resumed, true)
    await assertDrained(pool, source, all)
  })
})
