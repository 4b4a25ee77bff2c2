import { test, after, before } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { runCli } from '../helpers/cli.js'
import { startMemcached, type MemcachedServer } from '../helpers/memcached.js'
import { fixtureFiles, readFixture, strategyOfFile } from '../helpers/vectors.js'
import { HASH_NAMES } from '../../src/core/placement/index.js'

const work = mkdtempSync(path.join(tmpdir(), 'memdrain-e2e-'))
after(() => rmSync(work, { recursive: true, force: true }))

test('hashes --json lists every strategy with its client, version and kind', async () => {
  const r = await runCli(['hashes', '--json'])
  assert.equal(r.code, 0)
  assert.equal(r.json.status, 0)
  assert.deepEqual(
    r.json.result.map((h: { name: string }) => h.name),
    [...HASH_NAMES],
  )
  for (const h of r.json.result as { name: string; client: string; version: string; kind: string }[]) {
    assert.ok(h.client.length > 0 && h.version.length > 0, h.name)
    assert.ok(h.kind === 'consistent' || h.kind === 'modulo', h.name)
  }
  const defaultTwemproxy = r.json.result.find((h: { name: string }) => h.name === 'twemproxy-ketama-fnv1a-64')
  assert.match(defaultTwemproxy.configuration, /default/)
})

test('hashes --client answers for one client, and says "not supported yet" for another', async () => {
  const dalli = await runCli(['hashes', '--client', 'dalli', '--json'])
  assert.equal(dalli.code, 0)
  assert.deepEqual(
    dalli.json.result.map((h: { name: string }) => h.name),
    ['ruby-dalli'],
  )
  const twem = await runCli(['hashes', '--client', 'twemproxy', '--json'])
  assert.equal(twem.json.result.length, 48)
  assert.ok(twem.json.warnings.some((w: string) => /random/.test(w)), 'twemproxy random is named as not reproducible')
  const enyim = await runCli(['hashes', '--client', 'EnyimMemcached'])
  assert.equal(enyim.code, 3)
  assert.match(enyim.stderr, /not supported yet: EnyimMemcached/)
  const unknown = await runCli(['hashes', '--client', 'no-such-client', '--json'])
  assert.equal(unknown.code, 3)
  assert.equal(unknown.json.error.code, 'CLIENT_NOT_SUPPORTED')
  assert.match(unknown.json.error.message, /not supported yet: "no-such-client"/)
})

test('a twemproxy random pool is refused with the reason', async () => {
  const r = await runCli(['locate', 'k', '--json', '--servers', '127.0.0.1:1,127.0.0.1:2', '--hash', 'twemproxy-random-md5'])
  assert.equal(r.code, 2)
  assert.match(r.json.error.message, /cannot be reproduced: .*srandom/)
})

/**
 * Through the binary: for each strategy, the 5-server pool of its plain vector fixture (its first
 * 60 keys) must give the observed servers. Pools that need per-server fields (names,
 * hostnames, mcrouter weights) go through a pool file.
 */
test('locate through the binary agrees with the golden vectors of every strategy', async () => {
  const plain = fixtureFiles().filter((f) => f.split('.').length === 3)
  assert.equal(plain.length, HASH_NAMES.length)
  const runOne = async (file: string): Promise<void> => {
    const hash = strategyOfFile(file)
    const { header, pools } = readFixture(file)
    const pool = pools.find((p) => p.servers.length === 5)!
    const sample = pool.cases.slice(0, 60)
    const needsFile = pool.names !== undefined || pool.hostnames !== undefined || pool.weights !== undefined
    let args = ['locate', '--json', '--servers', pool.servers.join(','), '--hash', hash]
    if (needsFile) {
      const poolFile = path.join(work, `${hash}.json`)
      const servers = pool.servers.map((address, i) => ({
        address,
        ...(pool.names ? { name: pool.names[i] } : {}),
        ...(pool.hostnames ? { hostname: pool.hostnames[i] } : {}),
        ...(pool.weights ? { weight: pool.weights[i] } : {}),
      }))
      writeFileSync(poolFile, JSON.stringify({ hash, servers }))
      args = ['locate', '--json', '--pool', poolFile]
    }
    const r = await runCli(args, { input: sample.map(([k]) => header.keys[k]).join('\n') + '\n' })
    assert.equal(r.code, 0, `${hash}: ${r.stderr}`)
    sample.forEach(([k, server], i) => assert.equal(r.json.result[i].server, pool.servers[server], `${hash} key ${JSON.stringify(header.keys[k])}`))
  }
  // A few binaries at a time: each run is mostly Node's start-up.
  for (let i = 0; i < plain.length; i += 4) await Promise.all(plain.slice(i, i + 4).map(runOne))
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
