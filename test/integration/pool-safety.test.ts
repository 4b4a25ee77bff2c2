import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { hostname, tmpdir } from 'node:os'
import path from 'node:path'
import { createInterface } from 'node:readline'
import { randomBytes } from 'node:crypto'
import { findSameServers, refuseSameServers } from '../../src/core/inspect/server-identity.js'
import { FilePoolStore } from '../../src/core/pool/store.js'
import { findServer, type Pool } from '../../src/core/pool/model.js'
import { parsePoolText, validatePool } from '../../src/core/pool/validate.js'
import { defaultStateRoot, privateDir } from '../../src/core/local/state-dir.js'
import { CopyJournal } from '../../src/core/handoff/copy-journal.js'
import { HASH_INFO, HASH_NAMES, placementFor } from '../../src/core/placement/registry.js'
import { weightLimit } from '../../src/core/placement/weight-limits.js'
import { parseBandwidth, parseSize } from '../../src/cli/job-flags.js'
import { isMemdrainError } from '../../src/core/errors.js'
import { hasIPv6Loopback, startMemcached, type MemcachedServer } from '../helpers/memcached.js'
import { REPO_ROOT, runCli } from '../helpers/cli.js'

/** Issue 13: memdrain never acts on a server the operator did not name, nor through a file it did not mean. */

const IPV6 = hasIPv6Loopback()

describe('server identity: a server is what answers, not how it is spelled', () => {
  let a: MemcachedServer
  let b: MemcachedServer
  before(async () => {
    ;[a, b] = await Promise.all([startMemcached({ listen: IPV6 ? '127.0.0.1,::1' : '127.0.0.1' }), startMemcached()])
  })
  after(async () => {
    await Promise.all([a.kill(), b.kill()])
  })

  const pairOf = async (x: string, y: string): Promise<string[][]> =>
    (await findSameServers([{ address: x, where: 'x' }, { address: y, where: 'y' }])).map((s) => [s.a.address, s.b.address])

  it('localhost and 127.0.0.1 on one port are one server; two servers are two', async () => {
    assert.deepEqual(await pairOf(`127.0.0.1:${a.port}`, `localhost:${a.port}`), [[`127.0.0.1:${a.port}`, `localhost:${a.port}`]])
    assert.deepEqual(await pairOf(a.address, b.address), [])
  })

  it('[::1], [0:0:0:0:0:0:0:1] and [::ffff:127.0.0.1] are the server on 127.0.0.1', { skip: IPV6 ? false : 'no IPv6 loopback on this machine' }, async () => {
    const spellings = [`127.0.0.1:${a.port}`, `[::1]:${a.port}`, `[0:0:0:0:0:0:0:1]:${a.port}`, `[::ffff:127.0.0.1]:${a.port}`, b.address]
    const same = await findSameServers(spellings.map((address, i) => ({ address, where: `#${i}` })))
    // Every pair of the four spellings of a, and nothing with b.
    assert.equal(same.length, 6)
    for (const s of same) {
      assert.notEqual(s.a.address, b.address)
      assert.notEqual(s.b.address, b.address)
      assert.equal(s.pid, String(a.pid))
    }
  })

  it('the refusal names both spellings, exits 3, and leaves every item where it was', async () => {
    const before = await itemCount(a.address)
    await assert.rejects(
      refuseSameServers([
        { address: a.address, where: 'servers[0] of pool.json' },
        { address: `localhost:${a.port}`, where: 'servers[2] of pool.json' },
      ]),
      (err: unknown) => {
        assert.ok(isMemdrainError(err))
        assert.equal(err.code, 'SAME_SERVER')
        assert.equal(err.exitCode, 3)
        assert.match(err.message, new RegExp(`127\\.0\\.0\\.1:${a.port} \\(servers\\[0\\] of pool\\.json\\) and localhost:${a.port} \\(servers\\[2\\] of pool\\.json\\) are the same memcached \\(pid ${a.pid}`))
        return true
      },
    )
    // The probe key is deleted: the server holds what it held.
    assert.equal(await itemCount(a.address), before)
  })

  it('an unreachable spelling is skipped (the job names it), not taken for a duplicate', async () => {
    assert.deepEqual(await pairOf(a.address, '127.0.0.1:1'), [])
  })

  it('status warns about one server listed twice (pool file or --servers), and --strict refuses', async () => {
    const twice = `${a.address},localhost:${a.port},${b.address}`
    const r = await runCli(['status', '--servers', twice, '--hash', 'php-memcached-libketama', '--json'])
    assert.equal(r.code, 0, r.stdout)
    assert.ok(r.json.warnings.some((w: string) => new RegExp(`127\\.0\\.0\\.1:${a.port} \\(servers\\[0\\] of --servers\\) and localhost:${a.port} \\(servers\\[1\\] of --servers\\) are the same memcached`).test(w)), JSON.stringify(r.json.warnings))
    const strict = await runCli(['status', '--servers', twice, '--hash', 'php-memcached-libketama', '--json', '--strict'])
    assert.equal(strict.code, 3)
    assert.equal(strict.json.error.code, 'POOL_UNHEALTHY')
    const clean = await runCli(['status', '--servers', `${a.address},${b.address}`, '--hash', 'php-memcached-libketama', '--json'])
    assert.deepEqual(clean.json.warnings, [])
  })
})

describe('names and addresses never collide', () => {
  const doc = (servers: unknown[]): unknown => ({ hash: 'php-memcached-libketama', servers })

  it('a name that is another server\'s address (or reads as one) is refused, naming both fields', () => {
    assert.throws(() => validatePool(doc([{ address: '127.0.0.1:1001', name: '127.0.0.1:1002' }, { address: '127.0.0.1:1002' }]), 'p.json'), /servers\[0\]\.name: "127\.0\.0\.1:1002" is the address of servers\[1\] \(servers\[1\]\.address "127\.0\.0\.1:1002"\)/)
    // "cache-b" is cache-b:11211 as an address.
    assert.throws(() => validatePool(doc([{ address: 'cache-a:11211', name: 'cache-b' }, { address: 'cache-b:11211' }]), 'p.json'), /servers\[0\]\.name: "cache-b" is the address of servers\[1\]/)
    // A server named by its own address (twemproxy's default name) is fine.
    validatePool(doc([{ address: '127.0.0.1:1001', name: '127.0.0.1:1001' }, { address: '127.0.0.1:1002' }]), 'p.json')
  })

  it('an argument matches an exact address first, then a name; surrounding whitespace is ignored', () => {
    const pool = validatePool(doc([{ address: 'cache-a:11211', name: 'alpha' }, { address: 'cache-b:11211', name: 'beta' }]), 'p.json')
    assert.equal(findServer(pool, 'cache-b:11211')?.address, 'cache-b:11211')
    assert.equal(findServer(pool, 'alpha')?.address, 'cache-a:11211')
    assert.equal(findServer(pool, 'cache-b:11211 ')?.address, 'cache-b:11211')
    assert.equal(findServer(pool, 'cache-c:11211'), undefined)
  })

  it('an argument that is one server\'s name and another\'s address is refused as ambiguous', () => {
    // Not a valid pool file (validation refuses it): a pool built in code by a library user.
    const pool: Pool = {
      hash: 'php-memcached-libketama',
      replicas: 1,
      clients: 'static',
      servers: [
        { address: 'cache-a:11211', host: 'cache-a', port: 11211, weight: 1, name: 'cache-b', state: 'active' },
        { address: 'cache-b:11211', host: 'cache-b', port: 11211, weight: 1, state: 'active' },
      ],
    }
    assert.equal(findServer(pool, 'cache-b:11211')?.address, 'cache-b:11211', 'the exact address wins')
    assert.throws(() => findServer(pool, 'cache-b'), (err: unknown) => isMemdrainError(err) && err.code === 'AMBIGUOUS_SERVER' && /name of cache-a:11211 and the address of cache-b:11211/.test(err.message))
  })
})

describe('the pool file stays the file the applications read', () => {
  let dir: string
  before(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'memdrain-pool-safety-'))
  })
  after(() => rmSync(dir, { recursive: true, force: true }))

  it('a symlinked pool file is written at its target (the link stays a link) and locked beside it', async () => {
    const real = path.join(dir, 'real')
    mkdirSync(real)
    const target = path.join(real, 'pool.json')
    writeFileSync(target, JSON.stringify({ hash: 'memjs', servers: ['127.0.0.1:1001', '127.0.0.1:1002'] }))
    const link = path.join(dir, 'pool.json')
    symlinkSync(target, link)
    const viaLink = new FilePoolStore(link)
    const snap = await viaLink.load()
    const lock = await viaLink.lock('test')
    try {
      assert.ok(existsSync(`${target}.lock`), 'the lock is beside the target')
      assert.ok(!existsSync(`${link}.lock`))
      // A second job through the real path meets the same lock.
      await assert.rejects(new FilePoolStore(target).lock('second'), (err: unknown) => isMemdrainError(err) && err.code === 'POOL_LOCKED')
      await viaLink.save({ ...snap.pool, servers: snap.pool.servers.map((s, i) => (i === 1 ? { ...s, state: 'removed' } : s)) }, snap.revision)
    } finally {
      await lock.release()
    }
    assert.ok(lstatSync(link).isSymbolicLink(), 'the link is still a link')
    assert.equal(parsePoolText(readFileSync(target, 'utf8'), target).servers[1]!.state, 'removed', 'the target the applications read has the change')
    assert.ok(!existsSync(`${target}.lock`), 'released')
    // A link planted at the lock's name is refused, never followed or taken over.
    const victim = path.join(dir, 'lock-victim')
    writeFileSync(victim, 'precious\n')
    symlinkSync(victim, `${target}.lock`)
    await assert.rejects(viaLink.lock('third'), (err: unknown) => isMemdrainError(err) && err.code === 'LOCK_FAILED' && /is a symbolic link/.test(err.message))
    assert.equal(readFileSync(victim, 'utf8'), 'precious\n')
    rmSync(`${target}.lock`)
  })

  it('drain through a symlinked pool file: the target records it, the link stays a link', async () => {
    const [x, y] = await Promise.all([startMemcached(), startMemcached()])
    try {
      await fill(x.address, 'sym:', 300)
      const real = path.join(dir, 'deploy')
      mkdirSync(real)
      const target = path.join(real, 'pool.json')
      writeFileSync(target, JSON.stringify({ hash: 'php-memcached-libketama', clients: 'pool-aware', servers: [x.address, y.address] }))
      const link = path.join(dir, 'current-pool.json')
      symlinkSync(target, link)
      const r = await runCli(['drain', x.address, '--pool', link, '--yes', '--json', '--client-grace', '0', '--rate', '0', '--spool-dir', path.join(dir, 'spool')])
      assert.equal(r.code, 0, r.stdout + r.stderr)
      assert.ok(lstatSync(link).isSymbolicLink(), 'the link is still a link')
      const pool = parsePoolText(readFileSync(target, 'utf8'), target)
      assert.equal(pool.servers[0]!.state, 'removed', 'the file the applications read says so')
      assert.equal(await itemCount(y.address), 300, 'every key moved to the server that stays')
      assert.ok(!existsSync(`${target}.lock`) && !existsSync(`${link}.lock`))
    } finally {
      await Promise.all([x.kill(), y.kill()])
    }
  })

  it('two processes taking over one stale lock at the same instant: never both, 30 rounds', { timeout: 180_000 }, async () => {
    const lockFile = path.join(dir, 'race.json.lock')
    const racers = [racer(lockFile), racer(lockFile)]
    try {
      let takeovers = 0
      for (let round = 0; round < 30; round++) {
        // A lock left by a process that is gone: both racers judge it stale.
        const dead = spawnSync('true').pid!
        writeFileSync(lockFile, JSON.stringify({ pid: dead, host: hostname(), command: 'crashed', startedAt: new Date().toISOString(), token: randomBytes(8).toString('hex') }) + '\n')
        const at = Date.now() + 150
        const answers = await Promise.all(racers.map((r) => r.ask(`go ${round} ${at}`)))
        const got = answers.filter((a) => a === `${round} got`).length
        assert.ok(got <= 1, `round ${round}: both took the lock (${answers.join(', ')})`)
        assert.equal(got, 1, `round ${round}: one of them takes a stale lock (${answers.join(', ')})`)
        for (const a of answers) if (a !== `${round} got`) assert.equal(a, `${round} locked POOL_LOCKED`, 'the other is told who holds it')
        takeovers += got
        await Promise.all(racers.map((r) => r.ask('release')))
        assert.ok(!existsSync(lockFile))
      }
      assert.equal(takeovers, 30)
    } finally {
      for (const r of racers) r.child.kill('SIGKILL')
    }
  })
})

/** A long-lived child taking the lock on command (test/helpers/lock-race-child.ts). */
function racer(lockFile: string): { child: ChildProcessWithoutNullStreams; ask(line: string): Promise<string> } {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'test/helpers/lock-race-child.ts'), lockFile], { cwd: REPO_ROOT, stdio: 'pipe' })
  const waiting: ((line: string) => void)[] = []
  createInterface({ input: child.stdout }).on('line', (line) => waiting.shift()?.(line))
  return {
    child,
    ask: (line) =>
      new Promise((resolve) => {
        waiting.push(resolve)
        child.stdin.write(line + '\n')
      }),
  }
}

describe('a state directory no one else can touch', () => {
  let dir: string
  before(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'memdrain-state-'))
  })
  after(() => rmSync(dir, { recursive: true, force: true }))

  it('defaults to $XDG_STATE_HOME/memdrain, else ~/.local/state/memdrain', () => {
    assert.equal(defaultStateRoot({ XDG_STATE_HOME: '/x/state', HOME: '/home/u' }), '/x/state/memdrain')
    assert.equal(defaultStateRoot({ HOME: '/home/u' }), '/home/u/.local/state/memdrain')
    assert.equal(defaultStateRoot({ XDG_STATE_HOME: 'relative', HOME: '/home/u' }), '/home/u/.local/state/memdrain', 'a relative XDG_STATE_HOME is ignored (XDG spec)')
  })

  it('is created 0700, and refused when it is a link, another user\'s, or writable by others', () => {
    const fresh = privateDir(path.join(dir, 'a', 'memdrain'))
    assert.equal(statSync(fresh).mode & 0o777, 0o700)
    const code = (f: () => unknown): string | undefined => {
      try {
        f()
        return undefined
      } catch (err) {
        assert.ok(isMemdrainError(err), String(err))
        assert.equal(err.exitCode, 3)
        return `${err.code}: ${err.message}`
      }
    }
    const elsewhere = privateDir(path.join(dir, 'elsewhere'))
    symlinkSync(elsewhere, path.join(dir, 'link'))
    assert.match(code(() => privateDir(path.join(dir, 'link'))) ?? '', /STATE_DIR_UNSAFE: .* is a symbolic link/)
    const theirs = path.join(dir, 'theirs')
    mkdirSync(theirs, { mode: 0o700 })
    chownSync(theirs, 65534, 65534)
    assert.match(code(() => privateDir(theirs)) ?? '', /belongs to uid 65534/)
    const shared = path.join(dir, 'shared')
    mkdirSync(shared)
    chmodSync(shared, 0o1777)
    assert.match(code(() => privateDir(shared)) ?? '', /can be written by every user \(mode 1777\)/)
  })

  it('a link planted at a journal file name is not followed: the victim is untouched', () => {
    const root = privateDir(path.join(dir, 'root'))
    const victim = path.join(dir, 'victim')
    writeFileSync(victim, 'precious\n')
    const jdir = path.join(root, 'drain-x')
    mkdirSync(jdir, { mode: 0o700 })
    symlinkSync(victim, path.join(jdir, 'context'))
    assert.throws(() => CopyJournal.open(path.join(jdir, 'copy.journal'), 'servers'), (err: unknown) => isMemdrainError(err) && /ELOOP|symbolic link/i.test(err.message))
    symlinkSync(victim, path.join(root, 'drain-y'))
    assert.throws(() => CopyJournal.open(path.join(root, 'drain-y', 'copy.journal'), 'servers'), (err: unknown) => isMemdrainError(err) && err.code === 'STATE_DIR_UNSAFE')
    assert.equal(readFileSync(victim, 'utf8'), 'precious\n')
  })
})

describe('bounded inputs', () => {
  it('every strategy places a pool at its weight limits in well under a second', () => {
    for (const hash of HASH_NAMES) {
      if (!HASH_INFO[hash].weights) continue
      const limit = weightLimit(hash)
      // One server at the largest weight, the others sharing what the total leaves.
      const big = limit.total === undefined ? limit.perServer : Math.floor(limit.total / 2)
      const rest = limit.total === undefined ? limit.perServer : Math.floor(limit.total / 4)
      const servers = [big, rest, rest].map((weight, i) => ({ address: `10.0.0.${i + 1}:11211`, host: `10.0.0.${i + 1}`, port: 11211, weight, name: `s${i}` }))
      validatePool({ hash, servers: servers.map((s) => ({ address: s.address, weight: s.weight, name: s.name })) }, hash)
      const started = performance.now()
      const p = placementFor(hash, servers)
      for (let i = 0; i < 1000; i++) p.owner(Buffer.from(`key:${i}`))
      const ms = performance.now() - started
      // Measured 1-150 ms here; a loaded CI machine gets headroom, a regression to seconds does not.
      assert.ok(ms < 1500, `${hash}: ${ms.toFixed(0)} ms at weights ${big}/${rest}`)
    }
  })

  it('sizes round up, and a --bandwidth under 1KiB/s is refused instead of becoming 0 or 1 byte/s', () => {
    assert.equal(parseSize('0.4', 'min-free'), 1)
    assert.equal(parseSize('1.5KB', 'bandwidth'), 1536)
    assert.equal(parseBandwidth('0'), 0)
    assert.equal(parseBandwidth('1KiB'), 1024)
    for (const v of ['0.4', '0.6', '1', '1000']) assert.throws(() => parseBandwidth(v), /under 1KiB a second/)
  })

  it('a UTF-8 BOM is skipped; values are shown as written', () => {
    assert.equal(parsePoolText('\uFEFF{"hash":"memjs","servers":["127.0.0.1:1"]}', 'bom.json').servers.length, 1)
    assert.throws(() => parsePoolText('{"hash":"memjs",\n\u00A0"servers":["127.0.0.1:1"]}', 'nbsp.json'), /nbsp\.json: \(document\): is not valid JSON .*; line 2 holds an invisible character, U\+00A0/)
    assert.throws(() => validatePool({ hash: 'memjs', servers: [{ address: '127.0.0.1:1', weight: Number.POSITIVE_INFINITY }] }, 'p'), /weight: must be a whole number > 0, got Infinity/)
    assert.throws(() => validatePool({ hash: 'memjs', servers: [{ address: '127.0.0.1:1', weight: 'abc' }] }, 'p'), /weight: must be a whole number > 0, got "abc"/)
  })
})

async function fill(address: string, prefix: string, n: number): Promise<void> {
  const { MetaConnection, MetaPayload, parseAddress } = await import('../../src/core/protocol/index.js')
  const conn = await MetaConnection.connect(parseAddress(address))
  try {
    const p = new MetaPayload()
    for (let i = 0; i < n; i++) p.command('ms', Buffer.from(`${prefix}${i}`)).size(4).flag('T', 0).flags('q').end(Buffer.from('vvvv'))
    await conn.batch(p.noop().take(), () => undefined)
  } finally {
    await conn.close()
  }
}

async function itemCount(address: string): Promise<number> {
  const { MetaConnection, parseAddress } = await import('../../src/core/protocol/index.js')
  const conn = await MetaConnection.connect(parseAddress(address))
  try {
    return Number((await conn.stats()).get('curr_items'))
  } finally {
    await conn.close()
  }
}
