/**
 * Records golden placement vectors from the real clients, so anyone can regenerate (and check)
 * what test/fixtures/placement-vectors holds:
 *
 *   node --import tsx scripts/record-vectors.ts --client python-memcached,ruby-dalli [--from DIR] [--out DIR] [--all-keys]
 *   node --import tsx scripts/record-vectors.ts --client all
 *   node --import tsx scripts/record-vectors.ts --client nutcracker --only fnv1a_64     (file names containing it)
 *
 * For every vector file of the chosen clients in --from (default: the repository fixtures; a
 * directory of full `.jsonl` files, e.g. ../shared/placement/vectors, works too), and for every
 * pool in it: start one memcached per server address on loopback (exactly those host:port, since
 * several clients hash them), set the pool's keys through the real client (drivers in
 * scripts/vector-drivers/; twemproxy through a nutcracker started for the pool), then ask every
 * server with `mg <key>` which one holds each key. The observations are written to --out (default
 * tmp/recorded-vectors) in the shared format, and compared with the file they came from: the
 * summary says how many agree. A key no server holds (the client refused it) is reported, not
 * recorded. Every process started here is stopped by its PID.
 *
 * Clients (Debian / npm packages): python-memcached (python3-memcache), pylibmc (python3-pylibmc),
 * pymemcache (python3-pymemcache), ruby-dalli, php-memcached, php-memcache, gomemcache
 * (golang-github-bradfitz-gomemcache-dev), spymemcached (libspymemcached-java), nutcracker, memjs.
 * mcrouter is not packaged: its vectors come from its compiled hash functions and are not recorded
 * here. Then `node --import tsx scripts/select-vector-fixtures.ts tmp/recorded-vectors` rewrites
 * the fixtures from the recording.
 */

import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { gunzipSync } from 'node:zlib'

import memjs from 'memjs'

import { freeLoopbackPort } from '../src/core/local/memcached-launcher.js'

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const DRIVERS = path.join(REPO, 'scripts/vector-drivers')
const PYTHON = '/usr/bin/python3'
const SPY_JAR = '/usr/share/java/spymemcached.jar'
const GOPATH = '/usr/share/gocode'

interface Pool {
  servers: string[]
  weights?: number[]
  names?: string[]
  hostnames?: string[]
}

interface Source {
  file: string
  pools: { pool: Pool; keys: string[]; expected: Map<string, number> }[]
}

const { values: argv } = parseArgs({
  options: {
    client: { type: 'string', default: 'all' },
    from: { type: 'string', default: path.join(REPO, 'test/fixtures/placement-vectors') },
    out: { type: 'string', default: path.join(REPO, 'tmp/recorded-vectors') },
    'all-keys': { type: 'boolean', default: false },
    only: { type: 'string' },
  },
})

const scratch = mkdtempSync(path.join(tmpdir(), 'memdrain-record-'))
const children = new Set<ChildProcess>()

function stopAll(): void {
  for (const c of children) if (c.pid !== undefined && c.exitCode === null) process.kill(c.pid, 'SIGKILL')
  children.clear()
}
process.on('exit', () => {
  stopAll()
  rmSync(scratch, { recursive: true, force: true })
})
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => process.exit(130))

function has(cmd: string, args: string[]): boolean {
  return spawnSync(cmd, args, { stdio: 'ignore' }).status === 0
}

// ---------------------------------------------------------------------------------------------
// Clients: which vector files each records, and how it sets keys.

type SetKeys = (pool: Pool, keys: string[], variant: string) => Promise<void>

interface Client {
  /** Why it cannot run here, or undefined. */
  missing(): string | undefined
  /** vector file prefix → driver variant */
  files: Record<string, string>
  setKeys: SetKeys
}

function runDriver(cmd: string, args: string[], input: string, env: NodeJS.ProcessEnv = process.env): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env })
    children.add(child)
    let out = ''
    let err = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    child.stderr.on('data', (d: Buffer) => (err += d.toString()))
    child.on('error', reject)
    child.on('close', (code) => {
      children.delete(child)
      if (code === 0) resolve()
      else reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${err.slice(-2000)}${out.slice(-500)}`))
    })
    child.stdin.end(input)
  })
}

const jsonDriver =
  (cmd: string, args: string[], client: string, env?: NodeJS.ProcessEnv): SetKeys =>
  (pool, keys, variant) =>
    runDriver(cmd, args, JSON.stringify({ client, variant, servers: pool.servers, weights: pool.weights ?? null, keys }), env)

const PECL_INI: Record<string, string[]> = {
  standard_crc32: ['-d', 'memcache.hash_strategy=standard', '-d', 'memcache.hash_function=crc32'],
  consistent_crc32: ['-d', 'memcache.hash_strategy=consistent', '-d', 'memcache.hash_function=crc32'],
  standard_fnv: ['-d', 'memcache.hash_strategy=standard', '-d', 'memcache.hash_function=fnv'],
  consistent_fnv: ['-d', 'memcache.hash_strategy=consistent', '-d', 'memcache.hash_function=fnv'],
}

let goBinary: string | undefined
function buildGoDriver(): string {
  if (goBinary !== undefined) return goBinary
  const out = path.join(scratch, 'gomemcache-driver')
  const r = spawnSync('go', ['build', '-o', out, path.join(DRIVERS, 'driver.go')], {
    env: { ...process.env, GO111MODULE: 'off', GOPATH, GOCACHE: path.join(scratch, 'gocache'), GOFLAGS: '' },
    encoding: 'utf8',
  })
  if (r.status !== 0) throw new Error(`go build failed: ${r.stderr}`)
  goBinary = out
  return out
}

let javaClasses: string | undefined
/** Compiles Driver.java once (running a .java source directly would compile it for every pool). */
function buildJavaDriver(): string {
  if (javaClasses !== undefined) return javaClasses
  const out = path.join(scratch, 'java')
  const r = spawnSync('javac', ['-cp', SPY_JAR, '-d', out, path.join(DRIVERS, 'Driver.java')], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`javac failed: ${r.stderr}`)
  javaClasses = out
  return out
}

const TWEMPROXY_HASHES = ['one_at_a_time', 'md5', 'crc16', 'crc32', 'crc32a', 'fnv1_64', 'fnv1a_64', 'fnv1_32', 'fnv1a_32', 'hsieh', 'murmur', 'jenkins']

const CLIENTS: Record<string, Client> = {
  'python-memcached': {
    missing: () => (has(PYTHON, ['-c', 'import memcache']) ? undefined : 'python3-memcache is not installed'),
    files: { python_memcached: '' },
    setKeys: jsonDriver(PYTHON, [path.join(DRIVERS, 'driver.py')], 'python-memcached'),
  },
  pylibmc: {
    missing: () => (has(PYTHON, ['-c', 'import pylibmc']) ? undefined : 'python3-pylibmc is not installed'),
    files: { pylibmc_default: 'default', pylibmc_ketama: 'ketama', pylibmc_ketama_weighted: 'ketama_weighted', pylibmc_ketama_hash_md5: 'ketama_hash_md5' },
    setKeys: jsonDriver(PYTHON, [path.join(DRIVERS, 'driver.py')], 'pylibmc'),
  },
  pymemcache: {
    missing: () => (has(PYTHON, ['-c', 'import pymemcache']) ? undefined : 'python3-pymemcache is not installed'),
    files: { pymemcache_rendezvous: 'str', pymemcache_rendezvous_byteskeys: 'byteskeys' },
    setKeys: jsonDriver(PYTHON, [path.join(DRIVERS, 'driver.py')], 'pymemcache'),
  },
  'ruby-dalli': {
    missing: () => (has('ruby', ['-e', 'require "dalli"']) ? undefined : 'ruby-dalli is not installed'),
    files: { ruby_dalli: '' },
    setKeys: jsonDriver('ruby', [path.join(DRIVERS, 'driver.rb')], 'ruby-dalli'),
  },
  'php-memcached': {
    missing: () => (has('php', ['-r', 'exit(class_exists("Memcached") ? 0 : 1);']) ? undefined : 'php-memcached is not installed'),
    files: { php_memcached_default: 'default', php_memcached_libketama: 'libketama', php_memcached_consistent: 'consistent' },
    setKeys: jsonDriver('php', [path.join(DRIVERS, 'driver.php')], 'php-memcached'),
  },
  'php-memcache': {
    missing: () => (has('php', ['-r', 'exit(class_exists("Memcache") ? 0 : 1);']) ? undefined : 'php-memcache is not installed'),
    files: Object.fromEntries(Object.keys(PECL_INI).map((v) => [`php_memcache_${v}`, v])),
    setKeys: (pool, keys, variant) => jsonDriver('php', [...PECL_INI[variant]!, path.join(DRIVERS, 'driver.php')], 'php-memcache')(pool, keys, variant),
  },
  gomemcache: {
    missing: () => (has('go', ['version']) && existsSync(path.join(GOPATH, 'src/github.com/bradfitz/gomemcache')) ? undefined : 'go or golang-github-bradfitz-gomemcache-dev is not installed'),
    files: { go_gomemcache: '' },
    setKeys: (pool, keys, variant) => jsonDriver(buildGoDriver(), [], 'gomemcache')(pool, keys, variant),
  },
  spymemcached: {
    missing: () => (has('javac', ['-version']) && existsSync(SPY_JAR) ? undefined : 'a JDK (javac) or libspymemcached-java is not installed'),
    files: {
      spymemcached_native: 'native',
      spymemcached_ketama: 'ketama',
      spymemcached_ketama_libmemcached: 'ketama_libmemcached',
      spymemcached_ketama_weighted: 'ketama_weighted',
      spymemcached_consistent_native: 'consistent_native',
    },
    setKeys: (pool, keys, variant) =>
      runDriver('java', ['-cp', `${SPY_JAR}:${buildJavaDriver()}`, 'Driver'], [variant, pool.servers.join(' '), (pool.weights ?? []).join(' '), ...keys].join('\n') + '\n'),
  },
  nutcracker: {
    missing: () => (has('nutcracker', ['--version']) ? undefined : 'nutcracker is not installed'),
    files: Object.fromEntries(
      ['ketama', 'modula'].flatMap((dist) => TWEMPROXY_HASHES.flatMap((h) => ['', '_named'].map((n) => [`twemproxy_${dist}_${h}${n}`, `${dist} ${h}`]))),
    ),
    setKeys: setThroughNutcracker,
  },
  memjs: {
    missing: () => undefined,
    files: { memjs: '' },
    setKeys: async (pool, keys) => {
      const client = memjs.Client.create(pool.servers.join(','), { retries: 0, logger: { log: () => undefined } })
      try {
        for (const k of keys) await client.set(k, '1', {})
      } finally {
        client.quit()
      }
    },
  },
}

// ---------------------------------------------------------------------------------------------
// memcached servers and the probe.

function tcpReady(host: string, port: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  return new Promise((resolve) => {
    const attempt = (): void => {
      const s = connect(port, host)
      s.once('connect', () => {
        s.destroy()
        resolve(true)
      })
      s.once('error', () => {
        s.destroy()
        if (Date.now() > deadline) resolve(false)
        else setTimeout(attempt, 25)
      })
    }
    attempt()
  })
}

async function startServer(address: string): Promise<ChildProcess> {
  const colon = address.lastIndexOf(':')
  const host = address.slice(0, colon)
  const port = Number(address.slice(colon + 1))
  const args = ['-l', host, '-p', String(port), '-U', '0', '-m', '64']
  if (process.getuid?.() === 0) args.unshift('-u', 'root')
  const child = spawn('memcached', args, { stdio: 'ignore' })
  children.add(child)
  const exited = new Promise<false>((resolve) => child.once('exit', () => resolve(false)))
  const ok = await Promise.race([tcpReady(host, port, 3000), exited])
  if (!ok) {
    stop(child)
    throw new Error(`cannot start memcached on ${address} (in use?)`)
  }
  return child
}

function stop(child: ChildProcess): void {
  if (child.pid !== undefined && child.exitCode === null) process.kill(child.pid, 'SIGKILL')
  children.delete(child)
}

/** Sends `lines` (each ending in \r\n) on one connection and returns the first `count` reply lines. */
function exchange(address: string, payload: Buffer, count: number): Promise<string[]> {
  const colon = address.lastIndexOf(':')
  return new Promise((resolve, reject) => {
    const s = connect(Number(address.slice(colon + 1)), address.slice(0, colon))
    let buf = ''
    const lines: string[] = []
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1')
      let i: number
      while ((i = buf.indexOf('\r\n')) >= 0) {
        lines.push(buf.slice(0, i))
        buf = buf.slice(i + 2)
      }
      if (lines.length >= count) {
        s.destroy()
        resolve(lines.slice(0, count))
      }
    })
    s.on('error', reject)
    s.on('connect', () => s.write(payload))
  })
}

/** Which servers hold each key: `mg <key>` answers HD (held) or EN (not held). */
async function probe(servers: string[], keys: string[]): Promise<Map<string, number[]>> {
  const payload = Buffer.concat(keys.map((k) => Buffer.concat([Buffer.from('mg '), Buffer.from(k, 'utf8'), Buffer.from('\r\n')])))
  const holders = new Map<string, number[]>(keys.map((k) => [k, []]))
  await Promise.all(
    servers.map(async (address, i) => {
      const replies = await exchange(address, payload, keys.length)
      replies.forEach((r, j) => {
        if (r.startsWith('HD')) holders.get(keys[j]!)!.push(i)
      })
    }),
  )
  return holders
}

async function setThroughNutcracker(pool: Pool, keys: string[], variant: string): Promise<void> {
  const [distribution, hash] = variant.split(' ')
  const listen = await freeLoopbackPort()
  const conf = path.join(scratch, `nutcracker-${listen}.yml`)
  const servers = pool.servers.map((s, i) => `   - ${s}:${pool.weights?.[i] ?? 1}${pool.names ? ` ${pool.names[i]}` : ''}`)
  writeFileSync(conf, ['pool:', `  listen: 127.0.0.1:${listen}`, `  hash: ${hash}`, `  distribution: ${distribution}`, '  auto_eject_hosts: false', '  servers:', ...servers, ''].join('\n'))
  const child = spawn('nutcracker', ['-c', conf, '-o', path.join(scratch, `nutcracker-${listen}.log`)], { stdio: 'ignore' })
  children.add(child)
  try {
    if (!(await tcpReady('127.0.0.1', listen, 5000))) throw new Error('nutcracker did not start')
    let todo = keys
    for (let attempt = 0; attempt < 5 && todo.length > 0; attempt++) {
      const payload = Buffer.concat(todo.map((k) => Buffer.concat([Buffer.from('set '), Buffer.from(k, 'utf8'), Buffer.from(' 0 0 1\r\n1\r\n')])))
      const replies = await exchange(`127.0.0.1:${listen}`, payload, todo.length)
      todo = todo.filter((_, i) => replies[i] !== 'STORED')
    }
  } finally {
    stop(child)
  }
}

// ---------------------------------------------------------------------------------------------
// Sources and the run.

function readSource(dir: string, file: string, allKeys: boolean): Source {
  const pools = new Map<string, { pool: Pool; keys: string[]; expected: Map<string, number> }>()
  const add = (pool: Pool, key: string, server: number | undefined): void => {
    const id = JSON.stringify([pool.servers, pool.weights ?? null, pool.names ?? null, pool.hostnames ?? null])
    let p = pools.get(id)
    if (p === undefined) {
      p = { pool: { servers: pool.servers, ...(pool.weights ? { weights: pool.weights } : {}), ...(pool.names ? { names: pool.names } : {}), ...(pool.hostnames ? { hostnames: pool.hostnames } : {}) }, keys: [], expected: new Map() }
      pools.set(id, p)
    }
    if (!p.expected.has(key)) p.keys.push(key)
    if (server !== undefined) p.expected.set(key, server)
  }
  if (file.endsWith('.gz')) {
    const lines = gunzipSync(readFileSync(path.join(dir, file))).toString('utf8').split('\n').filter(Boolean)
    const header = JSON.parse(lines[0]!) as { keys: string[] }
    for (const l of lines.slice(1)) {
      const { cases, ...pool } = JSON.parse(l) as Pool & { cases: [number, number][] }
      for (const [k, s] of cases) add(pool, header.keys[k]!, s)
      if (allKeys) for (const k of header.keys) add(pool, k, undefined)
    }
  } else {
    for (const l of readFileSync(path.join(dir, file), 'utf8').split('\n').filter(Boolean)) {
      const { key, server, ...pool } = JSON.parse(l) as Pool & { key: string; server: number }
      add(pool, key, server)
    }
  }
  return { file: file.replace(/\.gz$/, ''), pools: [...pools.values()] }
}

async function main(): Promise<void> {
  const names = argv.client === 'all' ? Object.keys(CLIENTS) : argv.client.split(',').map((s) => s.trim())
  for (const n of names) if (CLIENTS[n] === undefined) throw new Error(`unknown client ${n}; known: ${Object.keys(CLIENTS).join(', ')}`)
  mkdirSync(argv.out, { recursive: true })
  const files = readdirSync(argv.from).filter((f) => f.endsWith('.jsonl') || f.endsWith('.jsonl.gz')).sort()
  let totalAgree = 0
  let totalCompared = 0
  for (const name of names) {
    const client = CLIENTS[name]!
    const missing = client.missing()
    if (missing !== undefined) {
      console.log(`${name}: skipped (${missing})`)
      continue
    }
    for (const file of files) {
      const prefix = file.slice(0, file.indexOf('.'))
      const variant = client.files[prefix]
      // .pickonly holds keys the Debian gomemcache refuses to store: not observable.
      if (variant === undefined || file.includes('.pickonly.') || (argv.only !== undefined && !file.includes(argv.only))) continue
      const source = readSource(argv.from, file, argv['all-keys'])
      const lines: string[] = []
      let agree = 0
      let compared = 0
      let unstored = 0
      const disagreements: string[] = []
      for (const { pool, keys, expected } of source.pools) {
        const servers: ChildProcess[] = []
        try {
          for (const s of pool.servers) servers.push(await startServer(s))
          await client.setKeys(pool, keys, variant)
          const holders = await probe(pool.servers, keys)
          for (const key of keys) {
            const h = holders.get(key)!
            if (h.length !== 1) {
              unstored++
              continue
            }
            lines.push(JSON.stringify({ servers: pool.servers, key, server: h[0], ...(pool.weights ? { weights: pool.weights } : {}), ...(pool.names ? { names: pool.names } : {}), ...(pool.hostnames ? { hostnames: pool.hostnames } : {}) }))
            const want = expected.get(key)
            if (want === undefined) continue
            compared++
            if (want === h[0]) agree++
            else if (disagreements.length < 5) disagreements.push(`${JSON.stringify(key)} on ${pool.servers[h[0]!]} (vectors: ${pool.servers[want]})`)
          }
        } catch (err) {
          console.log(`${name} ${source.file} pool ${pool.servers.join(',')}: ${(err as Error).message}`)
        } finally {
          for (const s of servers) stop(s)
        }
      }
      writeFileSync(path.join(argv.out, source.file), lines.join('\n') + (lines.length > 0 ? '\n' : ''))
      totalAgree += agree
      totalCompared += compared
      console.log(`${name} ${source.file}: ${lines.length} recorded, ${agree}/${compared} agree with ${path.basename(argv.from)}${unstored > 0 ? `, ${unstored} not stored by the client` : ''}`)
      for (const d of disagreements) console.log(`  differs: ${d}`)
    }
  }
  console.log(`total: ${totalAgree}/${totalCompared} agree; recorded vectors in ${argv.out}`)
  if (totalAgree !== totalCompared) process.exitCode = 1
}

await main()
