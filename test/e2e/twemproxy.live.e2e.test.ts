import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { parse } from 'yaml'
import { runCli } from '../helpers/cli.js'
import { freePort, startMemcached, type MemcachedServer } from '../helpers/memcached.js'
import { driverKey, PROXY_CLIENT, runClient, type ReadReport } from '../helpers/live-clients.js'
import { nutcrackerMissing, startNutcracker, type Nutcracker } from '../helpers/nutcracker.js'
import { locateAll } from '../integration/drain.fixtures.js'

/**
 * twemproxy for real: nutcracker.yml files as operators write them, imported with `pool import`;
 * keys written through the proxy; `locate` on the imported pool must name the backend that holds
 * each key; a drain behind the proxy, switched with the config memdrain writes
 * (MEMDRAIN_NEW_CONFIG), leaves every key readable through the proxy.
 */

const missing = nutcrackerMissing() ?? PROXY_CLIENT.missing()
const KEYS = 1500

interface Setup {
  dir: string
  backends: MemcachedServer[]
  listen: number
  config: string
}

describe('twemproxy (nutcracker) live', { skip: missing ?? false, concurrency: 2 }, () => {
  const backends: MemcachedServer[] = []
  const proxies: Nutcracker[] = []
  const dirs: string[] = []
  after(async () => {
    await Promise.all([...proxies.map((p) => p.stop()), ...backends.map((s) => s.kill())])
    for (const d of dirs) rmSync(d, { recursive: true, force: true })
  })

  /** Backends, and a nutcracker.yml with pool `cache` over them (servers from `serverLines`) plus another pool. */
  async function setup(count: number, poolLines: (ports: number[]) => string[]): Promise<Setup> {
    const servers = await Promise.all(Array.from({ length: count }, () => startMemcached()))
    backends.push(...servers)
    const dir = mkdtempSync(path.join(tmpdir(), 'memdrain-nc-'))
    dirs.push(dir)
    const listen = await freePort()
    const other = await freePort()
    const config = path.join(dir, 'nutcracker.yml')
    const text = [
      '# written by the test, as an operator would',
      'cache:',
      `  listen: 127.0.0.1:${listen}`,
      '  timeout: 2000',
      '  server_retry_timeout: 2000',
      ...poolLines(servers.map((s) => s.port)).map((l) => `  ${l}`),
      'sessions:',
      `  listen: 127.0.0.1:${other}`,
      '  servers:',
      `   - 127.0.0.1:${servers[0]!.port}:1`,
      '',
    ].join('\n')
    writeFileSync(config, text)
    return { dir, backends: servers, listen, config }
  }

  async function proxy(s: Setup, config = s.config): Promise<Nutcracker> {
    const p = await startNutcracker(config, s.listen, path.join(s.dir, `nutcracker-${proxies.length}.log`))
    proxies.push(p)
    return p
  }

  const CONFIGS: { name: string; lines: (ports: number[]) => string[] }[] = [
    { name: 'default (no hash: or distribution: lines)', lines: (p) => ['servers:', ...p.map((port) => ` - 127.0.0.1:${port}:1`)] },
    {
      name: 'hash: md5, ketama, names and weights',
      lines: (p) => ['hash: md5', 'distribution: ketama', 'servers:', ...p.map((port, i) => ` - 127.0.0.1:${port}:${i + 1} ${['shard-c', 'shard-a', 'mc-longer-d', 'b'][i]}`)],
    },
    {
      name: 'modula fnv1a_64 with names',
      lines: (p) => ['hash: fnv1a_64', 'distribution: modula', 'servers:', ...p.map((port, i) => ` - 127.0.0.1:${port}:1 node-${p.length - i}`)],
    },
  ]

  for (const c of CONFIGS) {
    it(`pool import of a real nutcracker.yml (${c.name}): locate names the backend the proxy chose for every key`, async () => {
      const s = await setup(4, c.lines)
      const p = await proxy(s)
      const prefix = `nc-import-${c.name.length}`
      assert.equal((await runClient<{ written: number }>(PROXY_CLIENT, 'write', [p.address], KEYS, prefix)).written, KEYS)

      const poolFile = path.join(s.dir, 'memdrain.json')
      const imp = await runCli(['pool', 'import', s.config, '--from', 'twemproxy', '--pool-name', 'cache', '--pool', poolFile, '--json'])
      assert.equal(imp.code, 0, imp.stdout + imp.stderr)
      const keys = Array.from({ length: KEYS }, (_, i) => driverKey(prefix, i))
      const keysFile = path.join(s.dir, 'keys.txt')
      writeFileSync(keysFile, keys.join('\n') + '\n')
      const loc = await runCli(['locate', '--pool', poolFile, '--keys-file', keysFile, '--json'])
      assert.equal(loc.code, 0, loc.stdout + loc.stderr)
      const predicted = new Map((loc.json.result as { key: string; server: string }[]).map((r) => [r.key, r.server]))
      const found = await locateAll(s.backends.map((b) => b.address), keys.map((k) => Buffer.from(k)))
      let agree = 0
      const wrong: string[] = []
      for (const k of keys) {
        const where = found.get(Buffer.from(k).toString('hex')) ?? []
        if (where.length === 1 && where[0] === predicted.get(k)) agree++
        else if (wrong.length < 5) wrong.push(`${k}: proxy ${where.join('+') || 'nowhere'}, locate ${predicted.get(k)}`)
      }
      assert.equal(agree, KEYS, `${imp.json.result.hash}: ${wrong.join('; ')}`)
    })
  }

  it('drain behind a default-config nutcracker, switched with MEMDRAIN_NEW_CONFIG: every key readable through the proxy', async () => {
    const s = await setup(3, CONFIGS[0]!.lines)
    const p = await proxy(s)
    const prefix = 'nc-drain'
    assert.equal((await runClient<{ written: number }>(PROXY_CLIENT, 'write', [p.address], KEYS, prefix)).written, KEYS)
    const poolFile = path.join(s.dir, 'memdrain.json')
    const imp = await runCli(['pool', 'import', s.config, '--from', 'twemproxy', '--pool-name', 'cache', '--pool', poolFile])
    assert.equal(imp.code, 0, imp.stderr)

    // The switch: what an operator's deploy step does with the config memdrain writes.
    const deployed = path.join(s.dir, 'nutcracker.new.yml')
    const drained = s.backends[1]!.address
    const r = await runCli(
      ['drain', drained, '--pool', poolFile, '--yes', '--json', '--spool-dir', path.join(s.dir, 'spool'), '--rate', '0', '--switch-command', `cp "$MEMDRAIN_NEW_CONFIG" ${deployed} && test "$MEMDRAIN_CONFIG_FORMAT" = twemproxy`],
      { timeoutMs: 90_000 },
    )
    assert.equal(r.code, 0, r.stdout + r.stderr)

    const before = parse(readFileSync(s.config, 'utf8')) as Record<string, Record<string, unknown>>
    const after = parse(readFileSync(deployed, 'utf8')) as Record<string, Record<string, unknown>>
    assert.deepEqual(after.sessions, before.sessions, 'the other pool is kept')
    assert.deepEqual({ ...after.cache, servers: undefined }, { ...before.cache, servers: undefined }, 'listen, timeouts kept; no hash line added')
    assert.deepEqual(after.cache!.servers, (before.cache!.servers as string[]).filter((l) => !l.includes(`:${s.backends[1]!.port}:`)))

    await p.stop()
    const switched = await proxy(s, deployed)
    const back = await runClient<ReadReport>(PROXY_CLIENT, 'read', [switched.address], KEYS, prefix)
    assert.deepEqual({ hits: back.hits, misses: back.misses, mismatches: back.mismatches }, { hits: KEYS, misses: 0, mismatches: 0 }, back.examples.join('; '))
  })
})
