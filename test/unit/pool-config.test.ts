import { test } from 'node:test'
import assert from 'node:assert/strict'
import { parse as parseYaml } from 'yaml'
import { importTwemproxy, exportTwemproxy, TWEMPROXY_HASHES } from '../../src/core/pool/config/twemproxy.js'
import { importMcrouter, exportMcrouter } from '../../src/core/pool/config/mcrouter.js'
import { newPoolOf } from '../../src/core/pool/config/switch-env.js'
import { validatePool } from '../../src/core/pool/validate.js'
import { isHashName } from '../../src/core/placement/registry.js'
import { withServer, type Pool } from '../../src/core/pool/model.js'
import { MemdrainError } from '../../src/core/errors.js'

const FILE = '/etc/nutcracker/nutcracker.yml'

const refused = (fn: () => unknown, code: string, message: RegExp): void => {
  assert.throws(fn, (err: unknown) => err instanceof MemdrainError && err.code === code && err.exitCode === 3 && message.test(err.message))
}

const NC = `# production
alpha:
  listen: 127.0.0.1:22121
  hash: md5
  distribution: ketama
  timeout: 400
  auto_eject_hosts: false
  servers:
   - 10.0.0.2:11211:1 beta
   - 10.0.0.1:11211:2 al
   - 10.0.0.3:11212:1
beta:
  listen: 127.0.0.1:22122 # other pool
  hash: fnv1a_64
  distribution: modula
  servers:
   - 10.0.1.1:11211:1
`

test('twemproxy import: strategy, servers in twemproxy order, weights, names, origin, notes', () => {
  const { pool, poolName, notes } = importTwemproxy(NC, FILE, 'alpha')
  assert.equal(poolName, 'alpha')
  assert.equal(pool.hash, 'twemproxy-ketama-md5-named')
  // Identities: "beta", "al", "10.0.0.3:11212" (unnamed: host:port). Sorted shorter first.
  assert.deepEqual(pool.servers.map((s) => [s.address, s.weight, s.name]), [
    ['10.0.0.1:11211', 2, 'al'],
    ['10.0.0.2:11211', 1, 'beta'],
    ['10.0.0.3:11212', 1, '10.0.0.3:11212'],
  ])
  assert.deepEqual(pool.origin, { format: 'twemproxy', file: FILE, pool: 'alpha' })
  assert.ok(notes.some((n) => /listen, timeout, auto_eject_hosts/.test(n)), notes.join('\n'))
  assert.ok(notes.some((n) => /twemproxy's server order/.test(n)))
  const beta = importTwemproxy(NC, FILE, 'beta').pool
  assert.equal(beta.hash, 'twemproxy-modula-fnv1a-64')
  assert.equal(beta.servers[0]!.name, undefined)
})

test('twemproxy import: several pools need --pool-name, and an unknown one lists the pools', () => {
  refused(() => importTwemproxy(NC, FILE), 'CONFIG_INVALID', /holds 2 pools \(alpha, beta\)/)
  refused(() => importTwemproxy(NC, FILE, 'gamma'), 'CONFIG_INVALID', /gamma: no such pool \(pools: alpha, beta\)/)
})

test('twemproxy import: refusals name the key and the reason', () => {
  const pool = (lines: string): string => `p:\n  listen: 127.0.0.1:1\n${lines}\n  servers:\n   - 10.0.0.1:11211:1\n   - 10.0.0.2:11211:1\n`
  refused(() => importTwemproxy(pool('  distribution: random'), FILE), 'CONFIG_UNSUPPORTED', /p\.distribution: is random: .*random\(\)/)
  refused(() => importTwemproxy(pool('  hash_tag: "{}"'), FILE), 'CONFIG_UNSUPPORTED', /p\.hash_tag: .*tagged part/)
  refused(() => importTwemproxy(pool('  redis: true'), FILE), 'CONFIG_UNSUPPORTED', /Redis pool/)
  refused(() => importTwemproxy(pool('  hash: fnv1a-64'), FILE), 'CONFIG_INVALID', /p\.hash: "fnv1a-64" is not a twemproxy hash/)
  refused(() => importTwemproxy('p:\n  hash: md5\n  servers:\n   - /tmp/mc.sock:1\n', FILE), 'CONFIG_UNSUPPORTED', /unix socket/)
  refused(() => importTwemproxy('p:\n  hash: md5\n  servers:\n   - 10.0.0.1:11211:0\n', FILE), 'CONFIG_INVALID', /zero weight/)
  refused(() => importTwemproxy('p:\n  hash: md5\n  servers:\n   - 10.0.0.1:11211\n', FILE), 'CONFIG_INVALID', /not "host:port:weight \[name\]"/)
  refused(() => importTwemproxy('p:\n  hash: md5\n  servers:\n   - 10.0.0.1:11211:1 a\n   - 10.0.0.2:11211:1 a\n', FILE), 'CONFIG_INVALID', /same name "a"/)
  refused(() => importTwemproxy('p: [', FILE), 'CONFIG_INVALID', /not valid YAML/)
  const { notes } = importTwemproxy(pool('  hash: md5\n  listen_backlog: 3\n  auto_eject_hosts: true'), FILE)
  assert.ok(notes.some((n) => /listen_backlog: not a twemproxy 0\.5 setting; ignored/.test(n)), notes.join('\n'))
  assert.ok(notes.some((n) => /auto_eject_hosts is true/.test(n)))
})

test("twemproxy import: no hash/distribution lines mean twemproxy's defaults (fnv1a_64 + ketama)", () => {
  const text = 'p:\n  servers:\n   - 10.0.0.1:11211:1\n   - 10.0.0.2:11211:1\n'
  const { pool, notes } = importTwemproxy(text, FILE)
  assert.equal(pool.hash, 'twemproxy-ketama-fnv1a-64')
  assert.ok(notes.some((n) => /defaults apply \(hash fnv1a_64, distribution ketama\)/.test(n)))
  // Every twemproxy hash × distribution × names imports to a strategy memdrain has.
  for (const hash of TWEMPROXY_HASHES) {
    for (const distribution of ['ketama', 'modula']) {
      for (const named of [false, true]) {
        const lines = `p:\n  hash: ${hash}\n  distribution: ${distribution}\n  servers:\n   - 10.0.0.1:11211:1${named ? ' a' : ''}\n`
        assert.ok(isHashName(importTwemproxy(lines, FILE).pool.hash), `${hash} ${distribution} ${named}`)
      }
    }
  }
})

test('twemproxy export: a template keeps every other key, pool and comment; only the servers change', () => {
  const { pool } = importTwemproxy(NC, FILE, 'alpha')
  const drained = withServer(pool, '10.0.0.2:11211', (s) => ({ ...s, state: 'deactivating' }))
  const out = exportTwemproxy(drained, { poolName: 'alpha', template: { text: NC, file: FILE } })
  assert.match(out, /^# production/)
  assert.match(out, /# other pool/)
  const doc = parseYaml(out) as Record<string, Record<string, unknown>>
  const before = parseYaml(NC) as Record<string, Record<string, unknown>>
  assert.deepEqual(doc.beta, before.beta)
  assert.deepEqual({ ...doc.alpha, servers: undefined }, { ...before.alpha, servers: undefined })
  // The unnamed server gets no name back (its name was its identity).
  assert.deepEqual(doc.alpha!.servers, ['10.0.0.1:11211:2 al', '10.0.0.3:11212:1'])
  // Round trip: the export imports to the same pool minus the drained server.
  const again = importTwemproxy(out, FILE, 'alpha').pool
  assert.deepEqual(again.servers.map((s) => [s.address, s.weight, s.name]), [
    ['10.0.0.1:11211', 2, 'al'],
    ['10.0.0.3:11212', 1, '10.0.0.3:11212'],
  ])
})

test('twemproxy export without a template: hash, distribution, servers; other strategies refused', () => {
  const pool = validatePool({ hash: 'twemproxy-modula-fnv1a-64', servers: ['10.0.0.1:11211', { address: '10.0.0.2:11300', weight: 3 }] }, 'p.json')
  assert.deepEqual(parseYaml(exportTwemproxy(pool, { poolName: 'memdrain' })), {
    memdrain: { hash: 'fnv1a_64', distribution: 'modula', servers: ['10.0.0.1:11211:1', '10.0.0.2:11300:3'] },
  })
  refused(() => exportTwemproxy(validatePool({ hash: 'memjs', servers: ['a:1'] }, 'p'), { poolName: 'x' }), 'CONFIG_UNSUPPORTED', /memjs is not a twemproxy strategy/)
})

const MC = `// mcrouter config
{
  "pools": {
    "main": { "servers": ["10.0.0.1:11211", "10.0.0.2:11211:ascii:plain", "10.0.0.3:11211"] },
    "crc": { "servers": ["10.0.1.1:5000", "10.0.1.2:5000"] },
    "salted": { "servers": ["10.0.2.1:5000", "10.0.2.2:5000"] },
    "twice": { "servers": ["10.0.3.1:5000", "10.0.3.2:5000"] },
  },
  "routes": [
    { "aliases": ["/a/a/"], "route": "PoolRoute|main" },
    { "aliases": ["/a/b/"], "route": { "type": "PoolRoute", "pool": "crc", "hash": { "hash_func": "Crc32" } } },
    { "aliases": ["/a/c/"], "route": { "type": "PoolRoute", "pool": "salted", "hash": { "salt": "x" } } },
    { "aliases": ["/a/d/"], "route": { "type": "AllSyncRoute", "children": ["PoolRoute|twice", { "type": "HashRoute", "children": "Pool|twice", "hash_func": "Crc32" }] } },
  ],
}
`

test('mcrouter import: servers in config order, hash from the routes, refusals with reasons', () => {
  const main = importMcrouter(MC, '/etc/mcrouter.json', 'main')
  assert.deepEqual(main.pool.servers.map((s) => s.address), ['10.0.0.1:11211', '10.0.0.2:11211', '10.0.0.3:11211'])
  assert.deepEqual(main.pool.origin, { format: 'mcrouter', file: '/etc/mcrouter.json', pool: 'main' })
  assert.ok(main.notes.some((n) => /ascii:plain/.test(n)), main.notes.join('\n'))
  assert.equal(main.pool.hash, 'mcrouter-ch3')
  assert.equal(importMcrouter(MC, '/m.json', 'crc').pool.hash, 'mcrouter-crc32')
  assert.equal(importMcrouter('{"route": {"type": "PoolRoute", "pool": {"name": "A", "servers": ["h1:1", "h2:2"]}, "hash": "Crc32"}}', '/m.json').pool.hash, 'mcrouter-crc32')
  refused(() => importMcrouter('{"pools": {"p": {"servers": ["a:1", "b:1"]}}, "route": {"type": "PoolRoute", "pool": "p", "hash": "Rendezvous"}}', '/m.json'), 'CONFIG_UNSUPPORTED', /not supported yet: mcrouter hash_func "Rendezvous"/)
  refused(() => importMcrouter(MC, '/m.json', 'salted'), 'CONFIG_UNSUPPORTED', /hash salt "x"/)
  refused(() => importMcrouter(MC, '/m.json', 'twice'), 'CONFIG_UNSUPPORTED', /hash pool "twice" in different ways/)
  refused(() => importMcrouter(MC, '/m.json'), 'CONFIG_INVALID', /holds 4 pools/)
  refused(() => importMcrouter('{"pools": {"p": {"servers": ["a:1"]}}, "route": {"type": "AllSyncRoute", "children": "Pool|p"}}', '/m.json'), 'CONFIG_UNSUPPORTED', /other than by a hash route/)
  refused(() => importMcrouter('{"pools": {"p": {"servers": ["%host%:1"]}}, "route": "PoolRoute|p"}', '/m.json'), 'CONFIG_UNSUPPORTED', /macro/)
  refused(() => importMcrouter('{"pools": ', '/m.json'), 'CONFIG_INVALID', /not valid JSON/)
})

test('mcrouter export: a template keeps the rest of the file and each server its suffix', () => {
  const { pool } = importMcrouter(MC, '/etc/mcrouter.json', 'main')
  const drained = withServer(pool, '10.0.0.3:11211', (s) => ({ ...s, state: 'deactivating' }))
  const out = exportMcrouter(drained, { poolName: 'main', template: { text: MC, file: '/etc/mcrouter.json' } })
  assert.match(out, /^\/\/ mcrouter config/)
  assert.match(out, /"servers": \[\s*"10\.0\.0\.1:11211",\s*"10\.0\.0\.2:11211:ascii:plain"\s*\]/)
  assert.equal(out.replace(/"main": \{[^}]*\}/, ''), MC.replace(/"main": \{[^}]*\}/, ''))
  assert.deepEqual(JSON.parse(exportMcrouter(drained, { poolName: 'main' })), { pools: { main: { servers: ['10.0.0.1:11211', '10.0.0.2:11211'] } }, route: 'PoolRoute|main' })
})

test('mcrouter WeightedCh3: pool weights (missing ones 0.5) into the pool file and back; a HashRoute\'s own weights', () => {
  const text = '{"pools": {"w": {"servers": ["a:1", "b:1", "c:1"], "weights": [1, 0.25]}}, "route": "PoolRoute|w"}'
  const { pool, notes } = importMcrouter(text, '/m.json')
  assert.equal(pool.hash, 'mcrouter-weighted-ch3')
  assert.deepEqual(pool.servers.map((s) => s.weight), [1, 0.25, 0.5])
  assert.ok(notes.some((n) => /1 weight\(s\) missing/.test(n)))
  const drained = withServer(pool, 'b:1', (s) => ({ ...s, state: 'deactivating' }))
  assert.deepEqual(JSON.parse(exportMcrouter(drained, { poolName: 'w', template: { text, file: '/m.json' } })).pools.w, { servers: ['a:1', 'c:1'], weights: [1, 0.5] })
  const hr = '{"pools": {"A": {"servers": ["h1:1", "h2:2"]}}, "route": {"type": "HashRoute", "children": "Pool|A", "hash_func": "WeightedCh3", "weights": [0.5, 1]}}'
  const hrPool = importMcrouter(hr, '/m.json').pool
  assert.deepEqual([hrPool.hash, hrPool.servers.map((s) => s.weight)], ['mcrouter-weighted-ch3', [0.5, 1]])
  const out = JSON.parse(exportMcrouter(withServer(hrPool, 'h1:1', (s) => ({ ...s, state: 'deactivating' })), { poolName: 'A', template: { text: hr, file: '/m.json' } }))
  assert.deepEqual([out.pools.A.servers, out.route.weights], [['h2:2'], [1]])
})

test('origin: validated when present; the switch pool keeps only active servers', () => {
  const base = { hash: 'memjs', servers: ['a:1', 'b:1'] }
  assert.deepEqual(validatePool({ ...base, origin: { format: 'twemproxy', file: '/x.yml', pool: 'p' } }, 'p.json').origin, { format: 'twemproxy', file: '/x.yml', pool: 'p' })
  for (const [origin, field] of [
    ['x', /origin: must be an object/],
    [{ format: 'haproxy', file: '/x', pool: 'p' }, /origin\.format: must be one of "twemproxy", "mcrouter"/],
    [{ format: 'mcrouter', file: 'rel.json', pool: 'p' }, /origin\.file: must be an absolute path/],
    [{ format: 'mcrouter', file: '/x', pool: '' }, /origin\.pool: must be a non-empty string/],
    [{ format: 'mcrouter', file: '/x', pool: 'p', extra: 1 }, /origin\.extra: unknown field/],
  ] as const) {
    assert.throws(() => validatePool({ ...base, origin }, 'p.json'), (err: unknown) => err instanceof MemdrainError && err.code === 'POOL_INVALID' && field.test(err.message))
  }
  const pool: Pool = withServer(validatePool(base, 'p'), 'b:1', (s) => ({ ...s, state: 'deactivating' }))
  assert.deepEqual(newPoolOf(pool).servers.map((s) => [s.address, s.state]), [['a:1', 'active']])
})
