/**
 * The job commands' output through the built binary, against real memcached: --quiet, summaries
 * that add up, timestamps on log lines off a terminal, an idle mirror's heartbeat, mirror
 * --servers without --hash, pool show naming the file lock's holder, a rebalance's failed
 * switch (its message, no MaxListenersExceededWarning with 3 sources), too-large items at the
 * default threshold (docs/errors.md).
 */
import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { hostname, tmpdir } from 'node:os'
import path from 'node:path'
import { once } from 'node:events'
import { acquireFileLock } from '../../src/core/pool/lock.js'
import { REPO_ROOT, runCli } from '../helpers/cli.js'
import { startMemcached, type MemcachedServer } from '../helpers/memcached.js'
import { connect, keysOf, setAll, startPool, type TestPool } from './drain.fixtures.js'

const pools: TestPool[] = []
const servers: MemcachedServer[] = []
after(async () => {
  await Promise.all(pools.map((p) => p.stop()))
  await Promise.all(servers.map((s) => s.kill()))
})

async function poolWithKeys(count: number, keys: number, opts: Parameters<typeof startPool>[1] = {}): Promise<TestPool> {
  const p = await startPool(count, opts)
  pools.push(p)
  const c = await connect(p.servers[0]!.address)
  await setAll(c, keysOf('ux', keys).map((key) => ({ key, value: Buffer.from('some value') })))
  await c.close()
  return p
}

const ISO_LINE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?Z /

describe('job commands: output', () => {
  it('--quiet: no log lines; the summary adds up to the keys at start', async () => {
    const p = await poolWithKeys(3, 500, { clients: 'pool-aware' })
    const src = p.servers[0]!.address
    const r = await runCli(['drain', src, '--pool', p.file, '--yes', '--quiet', '--client-grace', '0', '--rate', '0', '--spool-dir', path.join(p.dir, 'spool')])
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stderr, '', 'nothing on stderr with --quiet')
    const line = r.stdout.split('\n').find((l) => / keys at start = /.test(l))!
    assert.ok(line !== undefined, r.stdout)
    const [lhs, rhs] = line.trim().split(' = ') as [string, string]
    const n = (s: string): number => Number(/^([\d,]+)/.exec(s)![1]!.replaceAll(',', ''))
    assert.equal(n(lhs), 500)
    assert.equal(rhs.split(' + ').map(n).reduce((a, b) => a + b, 0), 500, line)
    assert.match(r.stdout, /^this run: .* of values written in .* keys\/s, the wait for the switch excluded/m)
    assert.match(r.stdout, /DESTINATION +KEYS +VALUE BYTES/)
  })

  it('off a terminal every log line starts with a timestamp', async () => {
    const p = await poolWithKeys(2, 50, { clients: 'pool-aware' })
    const r = await runCli(['drain', p.servers[0]!.address, '--pool', p.file, '--yes', '--client-grace', '0', '--spool-dir', path.join(p.dir, 'spool')])
    assert.equal(r.code, 0, r.stderr)
    const lines = r.stderr.split('\n').filter((l) => l !== '')
    assert.ok(lines.length >= 3, r.stderr)
    for (const l of lines) assert.match(l, ISO_LINE)
  })

  it('mirror: --servers needs no --hash; an idle mirror logs a heartbeat (--verbose: every pass), even under --json', async () => {
    const active = await startMemcached()
    const passive = await startMemcached()
    servers.push(active, passive)
    const once1 = await runCli(['mirror', active.address, passive.address, '--servers', active.address, '--once', '--yes', '--json'])
    assert.equal(once1.code, 0, once1.stderr)
    // Run where no ./memdrain.json is: the mirror then checks no pool.
    const cwd = mkdtempSync(path.join(tmpdir(), 'memdrain-mirror-'))
    const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1' }
    delete env.MEMDRAIN_POOL
    const child = spawn(process.execPath, [path.join(REPO_ROOT, 'bin/run.js'), 'mirror', active.address, passive.address, '--yes', '--json', '--verbose', '--interval', '0.2'], {
      cwd,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    const exited = once(child, 'exit') as Promise<[number | null]>
    let stderr = ''
    let stdout = ''
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    const deadline = Date.now() + 15_000
    while ((stderr.match(/mirror alive: /g) ?? []).length < 3 && Date.now() < deadline && child.exitCode === null) await new Promise((r) => setTimeout(r, 100))
    child.kill('SIGTERM')
    const [code] = await exited
    rmSync(cwd, { recursive: true, force: true })
    assert.equal(code, 0, stderr)
    const beats = stderr.split('\n').filter((l) => l.includes('mirror alive: '))
    assert.ok(beats.length >= 3, stderr)
    for (const b of beats) assert.match(b, new RegExp(`${ISO_LINE.source}(mirror .* → .*: )?mirror alive: pass \\d+, 0 keys on the active, .*lag \\d`))
    assert.match(beats.at(-1)!, /no change for \d+s/)
    assert.equal((JSON.parse(stdout) as { status: number }).status, 0)
  })

  it('pool show names the holder of the pool file lock (and a stale one)', async () => {
    const p = await poolWithKeys(2, 0)
    const lock = await acquireFileLock(`${p.file}.lock`, 'memdrain drain 10.0.0.3:11211')
    try {
      const j = await runCli(['pool', 'show', '--pool', p.file, '--json'])
      assert.equal(j.code, 0, j.stderr)
      assert.deepEqual(j.json.result.lock, { command: 'memdrain drain 10.0.0.3:11211', pid: process.pid, host: hostname(), startedAt: lock.holder.startedAt })
      const h = await runCli(['pool', 'show', '--pool', p.file])
      assert.match(h.stdout, new RegExp(`^lock: held by \`memdrain drain 10\\.0\\.0\\.3:11211\` \\(pid ${process.pid} on `, 'm'))
    } finally {
      await lock.release()
    }
    assert.match((await runCli(['pool', 'show', '--pool', p.file])).stdout, /^lock: free$/m)
    writeFileSync(`${p.file}.lock`, JSON.stringify({ pid: 2 ** 22 + 17, host: hostname(), command: 'memdrain drain x', startedAt: new Date().toISOString(), token: 't' }))
    assert.match((await runCli(['pool', 'show', '--pool', p.file])).stdout, /^lock: stale \(its holder is gone; the next job takes it over\), was held by `memdrain drain x`/m)
  })

  it('rebalance with 3 sources whose switch command fails: exit 68, "run the same memdrain command again", no MaxListenersExceededWarning', async () => {
    const p = await poolWithKeys(3, 600)
    const c = await connect(p.servers[1]!.address)
    await setAll(c, keysOf('ux2', 600).map((key) => ({ key, value: Buffer.from('x'.repeat(200)) })))
    await c.close()
    const added = await startMemcached()
    servers.push(added)
    const r = await runCli(['rebalance', '--pool', p.file, '--add', added.address, '--yes', '--json', '--handoff', 'copy', '--switch-command', 'false', '--rate', '300', '--bandwidth', '20KB', '--spool-dir', path.join(p.dir, 'spool')], { timeoutMs: 90_000 })
    assert.equal(r.code, 68, r.stderr)
    assert.equal(r.json.error.code, 'SWITCH_FAILED')
    assert.ok(r.json.error.suggestions.some((s: string) => s.includes('run the same memdrain command again')), JSON.stringify(r.json.error))
    assert.doesNotMatch(JSON.stringify(r.json.error), /drain again/)
    assert.doesNotMatch(r.stderr, /MaxListenersExceededWarning/)
  })

  it('demo: the "Try next" lines run as printed (the program as it was run, a --pool with a space)', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'memdrain-demo-'))
    try {
      const demo = await runCli(['demo', '--pool', 'my pool.json', '--keys', '200', '--servers', '2', '--json'], { cwd: dir })
      assert.equal(demo.code, 0, demo.stderr)
      const next = demo.json.result.next as string[]
      assert.equal(next.length, 5)
      for (const line of next.filter((l) => !/ drain /.test(l))) {
        const r = spawnSync('sh', ['-c', line], { cwd: dir, encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } })
        assert.equal(r.status, 0, `${line}\n${r.stderr}`)
      }
      const locate = spawnSync('sh', ['-c', `${next[1]!} --json`], { cwd: dir, encoding: 'utf8' })
      const located = JSON.parse(locate.stdout) as { result: { key: string }[] }
      assert.equal(located.result.length, 3)
    } finally {
      await runCli(['demo', '--stop', '--pool', 'my pool.json'], { cwd: dir })
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('keys/s leave out the wait for the switch (rebalance and drain, copy hand-off)', async () => {
    const p = await poolWithKeys(2, 200)
    const added = await startMemcached()
    servers.push(added)
    const spool = path.join(p.dir, 'spool')
    const r = await runCli(['rebalance', '--pool', p.file, '--add', added.address, '--yes', '--json', '--handoff', 'copy', '--switch-command', 'sleep 3', '--rate', '0', '--spool-dir', spool])
    assert.equal(r.code, 0, r.stderr)
    assert.ok(r.json.result.durationSeconds < 2.5, `rebalance durationSeconds ${r.json.result.durationSeconds} includes the 3 s switch`)
    assert.ok(r.json.result.moved > 0)
    const d = await runCli(['drain', added.address, '--pool', p.file, '--yes', '--json', '--handoff', 'copy', '--switch-command', 'sleep 3', '--rate', '0', '--spool-dir', spool])
    assert.equal(d.code, 0, d.stderr)
    assert.ok(d.json.result.durationSeconds < 2.5, `drain durationSeconds ${d.json.result.durationSeconds} includes the 3 s switch`)
  })

  it('an item too large for its owner at the default threshold: exit 0, counted as skipped, the server flushed (docs/errors.md)', async () => {
    const p = await startPool(2, { clients: 'pool-aware', server: (i) => (i === 0 ? { itemSizeMax: '2m' } : {}) })
    pools.push(p)
    const src = p.servers[0]!.address
    const c = await connect(src)
    await setAll(c, [...keysOf('ok', 100).map((key) => ({ key, value: Buffer.from('fine') })), { key: Buffer.from('huge'), value: Buffer.alloc(1500 * 1024) }])
    await c.close()
    const r = await runCli(['drain', src, '--pool', p.file, '--json', '--yes', '--client-grace', '0', '--spool-dir', path.join(p.dir, 'spool')])
    assert.equal(r.code, 0, r.stderr)
    assert.deepEqual(r.json.result.skipped, { 'too-large': 1 })
    assert.equal(r.json.result.state, 'removed')
    assert.equal(r.json.result.purged, true)
  })
})
