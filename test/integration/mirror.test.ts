import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { checkMirrorPool, runMirror, type MirrorOptions, type MirrorPass } from '../../src/core/jobs/mirror.js'
import { MemdrainError } from '../../src/core/errors.js'
import { parsePoolText } from '../../src/core/pool/validate.js'
import { MetaPayload, type MetaConnection } from '../../src/core/protocol/index.js'
import { Conns, deleteAll, getAll, keysOf, setAll, type Item, type Stored } from './drain.fixtures.js'
import { startMemcached, type MemcachedServer } from '../helpers/memcached.js'
import { REPO_ROOT, runCli } from '../helpers/cli.js'
import { spawn } from 'node:child_process'
import { once } from 'node:events'

/** mirror: a passive server kept a hot copy of an active one. */

const dir = mkdtempSync(path.join(tmpdir(), 'memdrain-mirror-test-'))

function mirrorOptions(active: string, passive: string, extra: Partial<MirrorOptions> = {}): MirrorOptions {
  return {
    active,
    passive,
    intervalSeconds: 0.5,
    once: false,
    delete: false,
    rate: 0,
    bandwidth: 0,
    minTtl: 0,
    minFree: 0.1,
    allowEvictions: false,
    order: 'hot-first',
    spoolDir: path.join(dir, 'spool'),
    ...extra,
  }
}

function sameContent(active: Map<string, Stored>, passive: Map<string, Stored>): string[] {
  const problems: string[] = []
  for (const [hex, a] of active) {
    const p = passive.get(hex)
    const key = Buffer.from(hex, 'hex').toString()
    if (p === undefined) problems.push(`${key} missing on the passive`)
    else if (!p.value.equals(a.value) || p.flags !== a.flags) problems.push(`${key}: passive has ${p.value.toString()}/${p.flags}, active ${a.value.toString()}/${a.flags}`)
  }
  for (const hex of passive.keys()) if (!active.has(hex)) problems.push(`${Buffer.from(hex, 'hex').toString()} on the passive only`)
  return problems
}

describe('mirror', () => {
  const servers: MemcachedServer[] = []
  const conns = new Conns()
  const pair = async (): Promise<[string, string]> => {
    const [a, p] = await Promise.all([startMemcached(), startMemcached()])
    servers.push(a, p)
    return [a.address, p.address]
  }
  after(async () => {
    await conns.close()
    await Promise.all(servers.map((s) => s.kill()))
    rmSync(dir, { recursive: true, force: true })
  })

  it('--once copies every key with value, flags and TTL, overwriting stale values on the passive', async () => {
    const [active, passive] = await pair()
    const items: Item[] = Array.from({ length: 700 }, (_, i) => ({
      key: Buffer.from(`m:${i}`),
      value: Buffer.from(`value ${i} `.repeat(1 + (i % 4))),
      flags: i % 5,
      ttl: i % 3 === 0 ? 0 : 4000 + i,
    }))
    await setAll(await conns.get(active), items)
    // A stale value already on the passive: set semantics, the active wins.
    await setAll(await conns.get(passive), [{ key: Buffer.from('m:1'), value: Buffer.from('stale'), flags: 99 }])
    const r = await runMirror(mirrorOptions(active, passive, { once: true }))
    assert.equal(r.status, 0)
    assert.equal(r.passes, 1)
    assert.equal(r.copied, items.length)
    assert.equal(r.first?.listed, items.length)
    assert.equal(r.failed, 0)
    const got = await getAll(await conns.get(passive), items.map((it) => it.key))
    assert.equal(got.size, items.length)
    for (const it of items) {
      const g = got.get(it.key.toString('hex'))!
      assert.deepEqual(g.value, it.value)
      assert.equal(g.flags, it.flags)
      if (it.ttl === 0) assert.equal(g.ttl, -1)
      else assert.ok(Math.abs(g.ttl - it.ttl!) <= 5, `${it.key}: TTL ${g.ttl}, expected about ${it.ttl}`)
    }
  })

  it("follows the active's writes between passes: a key set after the first pass is on the passive long before the next pass", async () => {
    const [active, passive] = await pair()
    await setAll(await conns.get(active), keysOf('f:', 300).map((key) => ({ key, value: Buffer.from('v0') })))
    const passes: MirrorPass[] = []
    const follow: string[] = []
    const ac = new AbortController()
    // One pass a minute: anything on the passive within the test's seconds came through the follower.
    const mirror = runMirror(
      mirrorOptions(active, passive, {
        intervalSeconds: 60,
        signal: ac.signal,
        onEvent: (e) => {
          if (e.type === 'mirror-pass') passes.push(e.result)
          if (e.type === 'mirror-follow') follow.push(`${e.state}: ${e.message}`)
        },
      }),
    )
    while (passes.length < 1) await sleep(20)
    assert.ok(follow.some((f) => f.startsWith('on')), follow.join('\n'))
    const ac1 = await conns.get(active)
    const pc = await conns.get(passive)
    const lags: number[] = []
    for (let i = 0; i < 50; i++) {
      const key = Buffer.from(`f:${i}`)
      const value = Buffer.from(`v${i + 1}`)
      const t0 = performance.now()
      await setAll(ac1, [{ key, value, flags: 7 }])
      for (;;) {
        const got = (await getAll(pc, [key])).get(key.toString('hex'))
        if (got !== undefined && got.value.equals(value) && got.flags === 7) break
        assert.ok(performance.now() - t0 < 5000, `${key} reached the passive within 5 s`)
        await sleep(1)
      }
      lags.push(performance.now() - t0)
    }
    ac.abort()
    const r = await mirror
    assert.equal(passes.length, 1, 'no second pass ran')
    assert.ok((r.followed?.copied ?? 0) >= 50, JSON.stringify(r.followed))
    lags.sort((a, b) => a - b)
    process.stderr.write(`mirror follow lag over 50 writes: p50 ${lags[25]!.toFixed(1)} ms, max ${lags[49]!.toFixed(1)} ms\n`)
  })

  it('copies only what changed after the first pass, and converges under a concurrent set/delete writer within two passes after it stops (--delete)', async () => {
    const [active, passive] = await pair()
    const keys = keysOf('w:', 2000)
    const ac = await conns.get(active)
    await setAll(ac, keys.map((key) => ({ key, value: Buffer.from('v0'), flags: 1 })))
    // Left on the passive from before: --delete removes what the active does not have.
    await setAll(await conns.get(passive), [{ key: Buffer.from('leftover'), value: Buffer.from('x') }])

    const passes: MirrorPass[] = []
    const ac2 = new AbortController()
    const mirror = runMirror(mirrorOptions(active, passive, { delete: true, signal: ac2.signal, onEvent: (e) => e.type === 'mirror-pass' && passes.push(e.result) }))
    while (passes.length < 2) await sleep(50)
    assert.equal(passes[0]!.copied, keys.length)
    assert.equal(passes[1]!.copied, 0, 'nothing changed: nothing copied again')
    assert.equal(passes[0]!.deleted + passes[1]!.deleted, 1, 'the leftover key is deleted')

    // The writer: sets and deletes on the active for ~2.5 s, over its own connection.
    const writer = await conns.get(active)
    let round = 0
    const writeUntil = Date.now() + 2500
    while (Date.now() < writeUntil) {
      round++
      const p = new MetaPayload()
      for (let j = 0; j < 200; j++) {
        const k = keys[(round * 7919 + j * 31) % keys.length]!
        if ((round + j) % 5 === 0) p.command('md', k).flags('q').end()
        else {
          const v = Buffer.from(`v${round}-${j}`)
          p.command('ms', k).size(v.length).flag('F', round % 1000).flags('q').end(v)
        }
      }
      await (writer as MetaConnection).batch(p.noop().take(), () => undefined)
      await sleep(5)
    }
    await deleteAll(writer, keys.slice(0, 50)) // some deletes right at the end
    const stoppedAt = Date.now()
    const passesBefore = passes.length
    assert.ok(passes.slice(2).some((p) => p.copied > 0), 'passes during the writer copied changes')
    // Two passes that started after the writer stopped.
    const deadline = Date.now() + 60_000
    while (passes.filter((p) => Date.parse(p.startedAt) >= stoppedAt).length < 2 && Date.now() < deadline) await sleep(50)
    const converged = Date.now() - stoppedAt
    const a = await getAll(ac, [...keys, Buffer.from('leftover')])
    const p = await getAll(await conns.get(passive), [...keys, Buffer.from('leftover')])
    assert.deepEqual(sameContent(a, p), [])
    assert.ok(a.size < keys.length, 'the writer deleted keys')
    // Generous: the machine is shared; two intervals of 0.5 s plus two passes.
    assert.ok(converged < 15_000, `converged ${converged} ms after the writer stopped`)
    assert.ok(passes.length > passesBefore)
    ac2.abort()
    const r = await mirror
    assert.equal(r.status, 0, 'stopping a continuous mirror is a clean exit')
    assert.ok(r.deleted >= 50)
    assert.ok(r.lag.maxMs > 0 && r.lag.medianMs <= r.lag.maxMs)
  })

  it('refuses a passive the pool lists as active (exit 3) or the same server twice (exit 2); --once --json through the CLI', async () => {
    const [active, passive] = await pair()
    const pool = parsePoolText(JSON.stringify({ hash: 'memjs', servers: [{ address: active }, { address: passive }] }), 'test')
    await assert.rejects(checkMirrorPool(pool, 'test', active, passive), (err: unknown) => err instanceof MemdrainError && err.code === 'PASSIVE_IN_POOL' && err.exitCode === 3)
    await assert.rejects(checkMirrorPool(undefined, '', active, active), (err: unknown) => err instanceof MemdrainError && err.exitCode === 2)
    const removed = parsePoolText(JSON.stringify({ hash: 'memjs', servers: [{ address: active }, { address: passive, state: 'removed' }] }), 'test')
    await checkMirrorPool(removed, 'test', active, passive)

    const file = path.join(dir, 'pool.json')
    writeFileSync(file, JSON.stringify({ hash: 'memjs', servers: [{ address: active }, { address: passive }] }))
    const refused = await runCli(['mirror', active, passive, '--pool', file, '--once', '--yes', '--json'])
    assert.equal(refused.code, 3, refused.stderr)
    assert.equal(refused.json.error.code, 'PASSIVE_IN_POOL')

    const keys = keysOf('cli:', 300)
    await setAll(await conns.get(active), keys.map((key) => ({ key, value: Buffer.from('v') })))
    writeFileSync(file, JSON.stringify({ hash: 'memjs', servers: [{ address: active }] }))
    const ok = await runCli(['mirror', active, passive, '--pool', file, '--once', '--yes', '--json', '--rate', '0', '--spool-dir', path.join(dir, 'spool')])
    assert.equal(ok.code, 0, ok.stderr)
    assert.equal(ok.json.status, 0)
    assert.equal(ok.json.result.passes, 1)
    assert.equal(ok.json.result.copied, 300)
    assert.equal((await getAll(await conns.get(passive), keys)).size, 300)
  })

  it('runs until SIGINT, printing a line per pass, and exits 0', async () => {
    const [active, passive] = await pair()
    await setAll(await conns.get(active), keysOf('sig:', 100).map((key) => ({ key, value: Buffer.from('v') })))
    const child = spawn(process.execPath, [path.join(REPO_ROOT, 'bin/run.js'), 'mirror', active, passive, '--servers', active, '--hash', 'memjs', '--interval', '0.5', '--yes', '--rate', '0', '--spool-dir', path.join(dir, 'spool')], {
      env: { ...process.env, NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stderr = ''
    let stdout = ''
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    const exited = once(child, 'exit')
    const deadline = Date.now() + 30_000
    while (!/pass 1: 100 keys on the active, 100 copied/.test(stderr) && Date.now() < deadline) await sleep(50)
    assert.match(stderr, /pass 1: 100 keys on the active, 100 copied/)
    child.kill('SIGINT')
    const [code] = (await exited) as [number | null]
    assert.equal(code, 0, stderr)
    assert.match(stdout, /mirror .* pass\(es\), 100 copied/)
  })
})
