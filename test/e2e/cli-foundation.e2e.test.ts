import { test, after, before } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync, readdirSync, mkdtempSync, writeFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { runCli, REPO_ROOT } from '../helpers/cli.js'
import { startMemcached, type MemcachedServer } from '../helpers/memcached.js'

const VECTORS = process.env.MEMDRAIN_VECTORS ?? path.resolve(REPO_ROOT, '../shared/placement/vectors')
const work = mkdtempSync(path.join(tmpdir(), 'memdrain-e2e-'))
after(() => rmSync(work, { recursive: true, force: true }))

test('hashes --json lists every strategy with its client', async () => {
  const r = await runCli(['hashes', '--json'])
  assert.equal(r.code, 0)
  assert.equal(r.json.status, 0)
  assert.equal(r.json.result.length, 19)
  assert.ok(r.json.result.every((h: { client: string }) => h.client.length > 0))
})

test('locate through the binary agrees with the golden vectors of every strategy', async () => {
  const files = readdirSync(VECTORS).filter((f) => f.endsWith('.jsonl') && !f.includes('.'.repeat(2)) && f.split('.').length === 2)
  assert.ok(files.length >= 19)
  for (const file of files) {
    const hash = file.split('.')[0]!.replaceAll('_', '-')
    const lines = readFileSync(path.join(VECTORS, file), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { servers: string[]; key: string; server: number; names?: string[] })
    const pool = lines.find((l) => l.servers.length === 5)!.servers.join(',')
    const sample = lines.filter((l) => l.servers.join(',') === pool).slice(0, 60)
    let args = ['locate', '--json', '--servers', pool, '--hash', hash]
    if (sample[0]!.names !== undefined) {
      const poolFile = path.join(work, `${hash}.json`)
      writeFileSync(poolFile, JSON.stringify({ hash, servers: sample[0]!.servers.map((a, i) => ({ address: a, name: sample[0]!.names![i] })) }))
      args = ['locate', '--json', '--pool', poolFile]
    }
    const r = await runCli(args, { input: sample.map((l) => l.key).join('\n') + '\n' })
    assert.equal(r.code, 0, `${hash}: ${r.stderr}`)
    sample.forEach((l, i) => assert.equal(r.json.result[i].server, l.servers[l.server], `${hash} key ${JSON.stringify(l.key)}`))
  }
})

test('usage errors exit 2 with a JSON error envelope', async () => {
  const r = await runCli(['locate', 'k', '--servers', '127.0.0.1:1', '--json'])
  assert.equal(r.code, 2)
  assert.equal(r.json.status, 2)
  assert.equal(r.json.error.code, 'USAGE')
  assert.match(r.json.error.message, /--hash/)
  const bad = await runCli(['drain', '--no-such-flag', 'x', '--json'])
  assert.equal(bad.code, 2)
})

test('an invalid pool file exits 3 and names the file and the field', async () => {
  const file = path.join(work, 'bad.json')
  writeFileSync(file, JSON.stringify({ hash: 'memjs', servers: [{ address: '10.0.0.1:11211', weight: 0 }] }))
  const r = await runCli(['locate', 'k', '--pool', file, '--json'])
  assert.equal(r.code, 3)
  assert.equal(r.json.error.code, 'POOL_INVALID')
  assert.match(r.json.error.message, /bad\.json: servers\[0\]\.weight/)
  writeFileSync(file, '{"hash": "memjs", "servers": [')
  const t = await runCli(['status', '--pool', file])
  assert.equal(t.code, 3)
  assert.match(t.stderr, /not valid JSON/)
})

let up: MemcachedServer
let down: MemcachedServer
before(async () => {
  up = await startMemcached()
  down = await startMemcached()
})
after(async () => {
  await up.stop()
  await down.stop()
})

test('status reports a down server as a warning (exit 0), or exit 3 with --strict', async () => {
  await down.kill()
  const file = path.join(work, 'pool.json')
  writeFileSync(file, JSON.stringify({ hash: 'memjs', servers: [{ address: up.address }, { address: down.address }] }))
  const r = await runCli(['status', '--pool', file, '--json'])
  assert.equal(r.code, 0, r.stderr)
  const [a, b] = r.json.result.servers
  assert.equal(a.reachable, true)
  assert.match(a.version, /^1\.6\./)
  assert.equal(typeof a.limitBytes, 'number')
  assert.equal(b.reachable, false)
  assert.ok(r.json.warnings.some((w: string) => w.includes(down.address)))
  const strict = await runCli(['status', '--pool', file, '--strict', '--json'])
  assert.equal(strict.code, 3)
  assert.equal(strict.json.error.code, 'POOL_UNHEALTHY')
  const human = await runCli(['status', '--pool', file])
  assert.match(human.stdout, /SERVER\s+STATE\s+UP/)
})

test('demo starts a loaded pool, and --stop stops only its servers', async () => {
  const file = path.join(work, 'demo.json')
  const r = await runCli(['demo', '--pool', file, '--keys', '2000', '--servers', '3', '--memory', '16', '--json'])
  assert.equal(r.code, 0, r.stderr)
  assert.equal(r.json.result.servers.length, 3)
  const items = r.json.result.status.reduce((n: number, s: { items: number }) => n + s.items, 0)
  assert.equal(items, 2000)
  const stop = await runCli(['demo', '--stop', '--pool', file, '--json'])
  assert.equal(stop.code, 0)
  assert.equal(stop.json.result.servers.length, 3)
  assert.equal(up.running, true)
})
