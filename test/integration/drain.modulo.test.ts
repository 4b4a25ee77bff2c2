/**
 * Drain is a pool change: after `drain S`, a real application client configured with the server
 * list without S still finds every key. With a modulo placement (memjs, php-memcached's default,
 * pylibmc without behaviors) the owner of most keys on the servers that stay changes too, so every
 * server is a source; with a ring only S is read. Each client is the real library, in its own
 * language, writing before the drain and reading after it.
 */
import assert from 'node:assert/strict'
import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { after, describe, it } from 'node:test'
import memjs from 'memjs'
import { runDrain } from '../../src/core/jobs/drain.js'
import { MetaConnection, parseAddress } from '../../src/core/protocol/index.js'
import { drainOptions, startPool, type TestPool } from './drain.fixtures.js'

interface RealClient {
  name: string
  hash: string
  /** Why the client cannot run here, or undefined. */
  missing(): string | undefined
  write(servers: string[], items: [string, string][]): Promise<void>
  /** The values found, by key. */
  read(servers: string[], keys: string[]): Promise<Map<string, string>>
}

const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3'

/** Runs `code` in an interpreter with {servers, items|keys} as JSON on stdin; it prints the values found as JSON. */
function script(cmd: string, args: string[], code: string, input: unknown): Map<string, string> {
  const r = spawnSync(cmd, [...args, code], { input: JSON.stringify(input), encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 })
  if (r.status !== 0) throw new Error(`${cmd} failed (${r.status}): ${r.stderr}`)
  return new Map(Object.entries(JSON.parse(r.stdout || '{}') as Record<string, string>))
}

const PHP_CODE = (options: string): string => `
$in = json_decode(stream_get_contents(STDIN), true);
$m = new Memcached();
${options}
foreach ($in['servers'] as $s) { [$h, $p] = explode(':', $s); $m->addServer($h, (int)$p); }
if (isset($in['items'])) { foreach ($in['items'] as [$k, $v]) { if (!$m->set($k, $v)) { fwrite(STDERR, "set $k failed\\n"); exit(1); } } echo '{}'; }
else { $r = $m->getMulti($in['keys']); echo json_encode($r ?: new stdClass()); }
`

const PY_CODE = `
import json, sys, pylibmc
inp = json.load(sys.stdin)
c = pylibmc.Client(inp['servers'])
if 'items' in inp:
    for k, v in inp['items']:
        assert c.set(k, v), k
    print('{}')
else:
    print(json.dumps(c.get_multi(inp['keys'])))
`

const has = (cmd: string, args: string[]): boolean => spawnSync(cmd, args, { encoding: 'utf8' }).status === 0

function phpClient(hash: string, options: string): RealClient {
  return {
    name: `php-memcached (${hash})`,
    hash,
    missing: () => (has('php', ['-r', 'exit(class_exists("Memcached") ? 0 : 1);']) ? undefined : 'php-cli with php-memcached is not installed (apt-get install php-cli php-memcached)'),
    write: async (servers, items) => void script('php', ['-r'], PHP_CODE(options), { servers, items }),
    read: async (servers, keys) => script('php', ['-r'], PHP_CODE(options), { servers, keys }),
  }
}

const CLIENTS: RealClient[] = [
  {
    name: 'memjs (Node.js)',
    hash: 'memjs',
    missing: () => undefined,
    async write(servers, items) {
      const c = memjs.Client.create(servers.join(','), { retries: 0, logger: { log: () => undefined } })
      try {
        for (const [k, v] of items) assert.ok(await c.set(k, v, {}), k)
      } finally {
        c.close()
      }
    },
    async read(servers, keys) {
      const c = memjs.Client.create(servers.join(','), { retries: 0, logger: { log: () => undefined } })
      const out = new Map<string, string>()
      try {
        for (const k of keys) {
          const { value } = await c.get(k)
          if (value !== null) out.set(k, value.toString())
        }
      } finally {
        c.close()
      }
      return out
    },
  },
  phpClient('php-memcached-default', ''),
  {
    name: 'pylibmc (no behaviors)',
    hash: 'pylibmc-default',
    missing: () => (has(PYTHON, ['-c', 'import pylibmc']) ? undefined : 'python3-pylibmc is not installed (apt-get install python3-pylibmc)'),
    write: async (servers, items) => void script(PYTHON, ['-c'], PY_CODE, { servers, items }),
    read: async (servers, keys) => script(PYTHON, ['-c'], PY_CODE, { servers, keys }),
  },
]

const RING = phpClient('php-memcached-libketama', '$m->setOption(Memcached::OPT_LIBKETAMA_COMPATIBLE, true);')

const N = 2000
const items: [string, string][] = Array.from({ length: N }, (_, i) => [`user:${i}:profile`, `value-${i}-${'x'.repeat(i % 40)}`])

async function itemCount(address: string): Promise<number> {
  const c = await MetaConnection.connect(parseAddress(address))
  try {
    return Number((await c.stats()).get('curr_items'))
  } finally {
    await c.close()
  }
}

async function deletes(address: string): Promise<number> {
  const c = await MetaConnection.connect(parseAddress(address))
  try {
    return Number((await c.stats()).get('delete_hits'))
  } finally {
    await c.close()
  }
}

describe('drain with real application clients', () => {
  const pools: TestPool[] = []
  after(async () => {
    await Promise.all(pools.map((p) => p.stop()))
  })

  for (const client of CLIENTS) {
    for (const handoff of ['copy', 'move'] as const) {
      it(`${client.name}: after \`drain\` (${handoff} hand-off) of the 3rd of 4 servers, the client on the 3 others hits every key`, async (t) => {
        const why = client.missing()
        if (why !== undefined) return t.skip(why)
        const pool = await startPool(4, { hash: client.hash })
        pools.push(pool)
        const all = pool.servers.map((s) => s.address)
        const drained = all[2]!
        await client.write(all, items)
        const before = await client.read(all, items.map(([k]) => k))
        assert.equal(before.size, N, 'the client wrote every key')
        const onDrained = await itemCount(drained)

        const r = await runDrain(drainOptions(pool, drained, { handoff, waitForSwitch: async () => undefined }))
        assert.equal(r.status, 0, JSON.stringify({ ratio: r.ratio, failed: r.failed, skipped: r.skipped }))
        assert.equal(r.state, 'removed')
        assert.equal(r.scope.kind, 'modulo')
        assert.deepEqual(r.sources.map((s) => s.address).sort(), [...all].sort(), 'every server is a source')
        assert.equal(r.scope.keysOnLeaving, onDrained)
        assert.ok(r.scope.keysOnStaying > N / 3, `keys on the servers that stay change owner too (${r.scope.keysOnStaying})`)
        assert.equal(r.keysAtStart, r.scope.keysOnLeaving + r.scope.keysOnStaying, 'the ratio counts every key whose owner changes')
        assert.equal(pool.server(drained).state, 'removed')
        assert.equal(pool.server(drained).transition?.keysAtStart, r.keysAtStart, 'the pool record says what the result says')

        const remaining = all.filter((a) => a !== drained)
        const found = await client.read(remaining, items.map(([k]) => k))
        assert.equal(found.size, N, `${client.name} on the servers that stay hits ${found.size} of ${N}`)
        for (const [k, v] of items) assert.equal(found.get(k), v, k)
        // Nothing is left where no client of the new list looks (the copy hand-off deletes what the staying servers no longer own).
        let total = 0
        for (const a of remaining) total += await itemCount(a)
        assert.equal(total, N, 'each key once, at its owner')
      })
    }
  }

  it(`${RING.name}: a ring placement reads only the drained server; the client still hits every key`, async (t) => {
    const why = RING.missing()
    if (why !== undefined) return t.skip(why)
    const pool = await startPool(4, { hash: RING.hash })
    pools.push(pool)
    const all = pool.servers.map((s) => s.address)
    const drained = all[2]!
    await RING.write(all, items)
    const remaining = all.filter((a) => a !== drained)
    const countsBefore = await Promise.all(remaining.map(itemCount))
    const deletesBefore = await Promise.all(remaining.map(deletes))
    const onDrained = await itemCount(drained)

    const r = await runDrain(drainOptions(pool, drained, { handoff: 'move' }))
    assert.equal(r.status, 0)
    assert.equal(r.scope.kind, 'consistent')
    assert.deepEqual(r.sources.map((s) => s.address), [drained], 'only the drained server is a source')
    assert.equal(r.scope.keysOnStaying, 0)
    assert.equal(r.keysAtStart, onDrained)
    // The servers that stay only received keys: none was deleted or moved off them.
    assert.deepEqual(await Promise.all(remaining.map(deletes)), deletesBefore)
    const countsAfter = await Promise.all(remaining.map(itemCount))
    assert.equal(countsAfter.reduce((a, b) => a + b, 0) - countsBefore.reduce((a, b) => a + b, 0), onDrained)

    const found = await RING.read(remaining, items.map(([k]) => k))
    assert.equal(found.size, N)
  })

  it('`memdrain plan` of a modulo pool states the scope (every server a source, share of keys whose owner changes)', async () => {
    const pool = await startPool(4, { hash: 'memjs' })
    pools.push(pool)
    const all = pool.servers.map((s) => s.address)
    await CLIENTS[0]!.write(all, items)
    const out = execFileSync(process.execPath, ['bin/run.js', 'plan', all[2]!, '--pool', pool.file, '--json'], { encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } })
    const plan = (JSON.parse(out) as { result: { scope: { kind: string; sources: string[]; keysOnLeaving: number; keysOnStaying: number }; fraction: number; keysListed: number; estimatedSeconds: number } }).result
    assert.equal(plan.scope.kind, 'modulo')
    assert.equal(plan.scope.sources.length, 4)
    assert.equal(plan.keysListed, N)
    assert.ok(plan.fraction > 0.6 && plan.fraction < 0.85, `about 3/4 of the keys change owner with memjs 4→3 (${plan.fraction})`)
    const text = execFileSync(process.execPath, ['bin/run.js', 'plan', all[2]!, '--pool', pool.file], { encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } })
    assert.match(text, new RegExp(`removing ${all[2]!.replace(/\./g, '\\.')} from a modulo pool \\(memjs\\) changes the owner of [0-9.]+ ?% of all keys: ${plan.scope.keysOnLeaving} on .* and [0-9,]+ on the 3 server\\(s\\) that stay`))
    assert.equal(pool.server(all[2]!).state, 'active', 'plan writes nothing')
  })
})
