import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { parsePoolText } from '../../src/core/pool/validate.js'
import { poolPlacement } from '../../src/core/pool/placement.js'
import { MetaConnection, MetaPayload, parseAddress } from '../../src/core/protocol/index.js'
import { fakeServer, hasIPv6Loopback, startMemcached, type FakeServer, type MemcachedServer, type StartOptions } from '../helpers/memcached.js'
import { REPO_ROOT, runCli, type CliRun } from '../helpers/cli.js'
import { makeReadOnly, undoReadOnly } from '../helpers/read-only.js'
import { getAll } from '../integration/drain.fixtures.js'
import { copyJournalFile } from '../../src/core/handoff/copy-journal.js'

/**
 * Every bad input of issue 6 through the built CLI, as a table: the exit code, a fragment of the
 * message (and the error code), and that nothing changed — the pool file's bytes, and every
 * server's items (none flushed). docs/errors.md lists the same cases (checked below).
 */

interface Ctx {
  dir: string
  /** A pool file of `servers` in the store's own format; returns its path. */
  pool(name: string, doc: unknown): string
  servers: MemcachedServer[]
  fakes: FakeServer[]
}

interface Case {
  name: string
  /** The CLI arguments (--json is added). */
  args: (c: Ctx) => Promise<string[]> | string[]
  code: number
  errorCode?: string
  message: RegExp
  /** Extra environment. */
  env?: Record<string, string> | ((c: Ctx) => Record<string, string>)
  /** When the CLI returns a result (68), check it instead of an error. */
  result?: (r: CliRun) => void
  /** After the run: undo a mount or chattr, check a file outside the pool. */
  cleanup?: (c: Ctx) => void
  /** Why the case cannot run on this machine. */
  skip?: string | false
}

const NO_IPV6 = hasIPv6Loopback() ? false : 'no IPv6 loopback on this machine'
const SAME_SERVER = /are the same memcached \(pid \d+, started /

/** A pool of the three servers, then `extra` entries. */
function poolWith(c: Ctx, file: string, extra: unknown[], hash = 'php-memcached-libketama', more: Record<string, unknown> = {}): string {
  return c.pool(file, { hash, ...more, servers: [...servers(...c.servers), ...extra] })
}

/** The journal directory a copy drain of `server` from `poolFile` uses under `root` (what an attacker predicts). */
function journalDirOf(root: string, poolFile: string, server: string): string {
  return path.dirname(copyJournalFile(root, poolFile, server))
}

const KEYS_PER_SERVER = 200

async function load(address: string, prefix: string, n: number, size = 20): Promise<void> {
  const conn = await MetaConnection.connect(parseAddress(address))
  try {
    const p = new MetaPayload()
    for (let i = 0; i < n; i++) p.command('ms', Buffer.from(`${prefix}${i}`)).size(size).flag('T', 0).flags('q').end(Buffer.alloc(size, 120))
    await conn.batch(p.noop().take(), () => undefined)
  } finally {
    await conn.close()
  }
}

async function items(address: string): Promise<number> {
  const conn = await MetaConnection.connect(parseAddress(address))
  try {
    return Number((await conn.stats()).get('curr_items'))
  } finally {
    await conn.close()
  }
}

function servers(...list: { address: string }[]): { address: string }[] {
  return list.map((s) => ({ address: s.address }))
}

const CASES: Case[] = [
  {
    name: 'malformed pool file',
    args: (c) => ['status', '--pool', writeRaw(c, 'malformed.json', '{"hash": "memjs", "servers": [,]}')],
    code: 3,
    errorCode: 'POOL_INVALID',
    message: /malformed\.json: \(document\): is not valid JSON/,
  },
  {
    name: 'truncated pool file',
    args: (c) => ['drain', c.servers[0]!.address, '--yes', '--pool', writeRaw(c, 'truncated.json', JSON.stringify({ hash: 'memjs', servers: servers(...c.servers) }).slice(0, 40))],
    code: 3,
    errorCode: 'POOL_INVALID',
    message: /truncated\.json: \(document\): is not valid JSON/,
  },
  {
    name: 'unknown hash name',
    args: (c) => ['status', '--pool', c.pool('hash.json', { hash: 'ketama-md9', servers: servers(...c.servers) })],
    code: 3,
    errorCode: 'POOL_INVALID',
    message: /hash: unknown hash "ketama-md9"/,
  },
  {
    name: 'twemproxy random pool',
    args: (c) => ['drain', c.servers[0]!.address, '--yes', '--pool', c.pool('random.json', { hash: 'twemproxy-random-fnv1a-64', servers: servers(...c.servers) })],
    code: 3,
    errorCode: 'POOL_INVALID',
    message: /hash: "twemproxy-random-fnv1a-64" cannot be reproduced: .*srandom/,
  },
  {
    name: 'mcrouter weight out of range',
    args: (c) => ['drain', c.servers[0]!.address, '--yes', '--pool', c.pool('mcw.json', { hash: 'mcrouter-weighted-ch3', servers: c.servers.map((s) => ({ address: s.address, weight: 2 })) })],
    code: 3,
    errorCode: 'POOL_INVALID',
    message: /servers\[0\]\.weight: must be a number from 0 to 1 for mcrouter-weighted-ch3/,
  },
  {
    name: 'spymemcached hostname missing',
    args: (c) => ['drain', c.servers[0]!.address, '--yes', '--pool', c.pool('spy.json', { hash: 'spymemcached-ketama-libmemcached', servers: servers(...c.servers) })],
    code: 3,
    errorCode: 'POOL_INVALID',
    message: /servers\[0\]\.hostname: is required by spymemcached-ketama-libmemcached/,
  },
  {
    name: 'duplicate servers',
    args: (c) => ['drain', c.servers[0]!.address, '--yes', '--pool', c.pool('dup.json', { hash: 'memjs', servers: [...servers(...c.servers), { address: c.servers[1]!.address }] })],
    code: 3,
    errorCode: 'POOL_INVALID',
    message: /servers\[3\]\.address: "127\.0\.0\.1:\d+" duplicates servers\[1\]/,
  },
  {
    name: 'bad address in the pool file',
    args: (c) => ['status', '--pool', c.pool('addr.json', { hash: 'memjs', servers: [{ address: 'cache-a:11211:7' }] })],
    code: 3,
    errorCode: 'POOL_INVALID',
    message: /servers\[0\]\.address: Invalid server address "cache-a:11211:7"/,
  },
  {
    name: 'bad port on the command line',
    args: () => ['locate', 'k', '--servers', '127.0.0.1:99999', '--hash', 'memjs'],
    code: 2,
    errorCode: 'USAGE',
    message: /port 99999 is out of range \(1-65535\)/,
  },
  {
    name: 'weight 0',
    args: (c) => ['status', '--pool', c.pool('weight.json', { hash: 'memjs', servers: [{ address: c.servers[0]!.address, weight: 0 }] })],
    code: 3,
    errorCode: 'POOL_INVALID',
    message: /servers\[0\]\.weight: must be a whole number > 0, got 0/,
  },
  {
    name: 'replicas larger than the pool',
    args: (c) => ['status', '--pool', c.pool('replicas.json', { hash: 'memjs', replicas: 4, servers: servers(...c.servers) })],
    code: 3,
    errorCode: 'POOL_INVALID',
    message: /replicas: is 4 but only 3 server\(s\) are active/,
  },
  {
    name: 'drain a server not in the pool',
    args: (c) => ['drain', '127.0.0.1:1', '--yes', '--pool', c.pool('notin.json', { hash: 'memjs', servers: servers(...c.servers) })],
    code: 2,
    errorCode: 'SERVER_NOT_IN_POOL',
    message: /127\.0\.0\.1:1 is not in the pool/,
  },
  {
    name: 'drain the last active server',
    args: (c) => ['drain', c.servers[0]!.address, '--yes', '--pool', c.pool('last.json', { hash: 'memjs', servers: [{ address: c.servers[0]!.address }, { address: c.servers[1]!.address, state: 'removed' }] })],
    code: 3,
    errorCode: 'LAST_ACTIVE_SERVER',
    message: /is the last active server/,
  },
  ...['-0.1', '1.5', 'most'].map(
    (t): Case => ({
      name: `threshold ${t}`,
      args: (c) => ['drain', c.servers[0]!.address, '--yes', '--threshold', t, '--pool', c.pool(`thr${t}.json`, { hash: 'memjs', servers: servers(...c.servers) })],
      code: 2,
      errorCode: 'USAGE',
      message: new RegExp(`--threshold must be a number from 0 to 1, got "${t.replace('.', '\\.')}"`),
    }),
  ),
  ...[
    ['rate', '-5', /--rate must be a whole number ≥ 0, got "-5"/],
    ['rate', '1e3', /--rate must be a whole number ≥ 0, got "1e3"/],
    ['bandwidth', '-1MB', /--bandwidth must be a size like 50MB/],
    ['bandwidth', '10XB', /--bandwidth must be a size like 50MB/],
  ].map(
    ([flag, value, message]): Case => ({
      name: `${String(flag)} ${String(value)}`,
      args: (c) => ['drain', c.servers[0]!.address, '--yes', `--${String(flag)}=${String(value)}`, '--pool', c.pool(`${String(flag)}${String(value)}.json`, { hash: 'memjs', servers: servers(...c.servers) })],
      code: 2,
      errorCode: 'USAGE',
      message: message as RegExp,
    }),
  ),
  {
    name: 'a port where no server listens',
    args: (c) => ['drain', c.servers[0]!.address, '--yes', '--handoff', 'move', '--force', '--pool', c.pool('closed.json', { hash: 'memjs', servers: [...servers(...c.servers), { address: '127.0.0.1:1' }] })],
    code: 3,
    errorCode: 'SERVER_UNREACHABLE',
    message: /Cannot connect to memcached at 127\.0\.0\.1:1: connection refused/,
  },
  {
    name: 'an HTTP server',
    args: async (c) => {
      const http = await fakeServer(() => 'HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n', { closeAfterReply: true })
      c.fakes.push(http)
      return ['drain', c.servers[0]!.address, '--yes', '--handoff', 'move', '--force', '--pool', c.pool('http.json', { hash: 'memjs', servers: [...servers(...c.servers), { address: http.address }] })]
    },
    code: 3,
    errorCode: 'NOT_MEMCACHED',
    message: /does not speak the memcached text protocol: it answered "HTTP\/1\.1 400 Bad Request"/,
  },
  {
    name: 'memcached older than 1.6.10 (VERSION 1.4.5)',
    args: async (c) => {
      const old = await fakeServer((line) => (line === 'version' ? 'VERSION 1.4.5' : 'ERROR'))
      c.fakes.push(old)
      return ['drain', old.address, '--yes', '--handoff', 'move', '--force', '--pool', c.pool('old.json', { hash: 'memjs', servers: [{ address: old.address }, ...servers(...c.servers)] })]
    },
    code: 3,
    errorCode: 'VERSION_TOO_OLD',
    message: /is version 1\.4\.5; memdrain needs 1\.6\.10 or newer/,
  },
  {
    name: 'dumps disabled (-X)',
    args: async (c) => {
      const s = await extraServer(c, { disableDumps: true })
      await load(s.address, 'x:', KEYS_PER_SERVER)
      return ['drain', s.address, '--yes', '--handoff', 'move', '--force', '--pool', c.pool('nodump.json', { hash: 'memjs', servers: [{ address: s.address }, ...servers(...c.servers)] })]
    },
    code: 3,
    errorCode: 'DUMPS_DISABLED',
    message: /started with -X/,
  },
  {
    name: 'crawler off (-o no_lru_crawler)',
    args: async (c) => {
      const s = await extraServer(c, { noLruCrawler: true })
      await load(s.address, 'c:', KEYS_PER_SERVER)
      return ['drain', s.address, '--yes', '--handoff', 'move', '--force', '--pool', c.pool('nocrawl.json', { hash: 'memjs', servers: [{ address: s.address }, ...servers(...c.servers)] })]
    },
    code: 3,
    errorCode: 'CRAWLER_DISABLED',
    message: /LRU crawler disabled/,
  },
  {
    name: 'destinations without room',
    args: async (c) => {
      const src = await extraServer(c, { memoryMb: 64 })
      const small = await extraServer(c, { memoryMb: 2 })
      await load(src.address, 'big:', 6000, 1000)
      return ['drain', src.address, '--yes', '--handoff', 'move', '--force', '--pool', c.pool('room.json', { hash: 'memjs', servers: [{ address: src.address }, { address: small.address }] })]
    },
    code: 3,
    errorCode: 'NO_ROOM',
    message: /would make 127\.0\.0\.1:\d+ evict/,
  },
  {
    name: 'an item larger than the destination item_size_max',
    args: async (c) => {
      const src = await extraServer(c, { itemSizeMax: '4m', memoryMb: 64 })
      const dest = await extraServer(c, {})
      await load(src.address, 'small:', 50)
      await load(src.address, 'huge', 1, 2 * 1024 * 1024)
      return ['drain', src.address, '--yes', '--handoff', 'move', '--force', '--client-grace', '0', '--threshold', '1', '--pool', c.pool('toolarge.json', { hash: 'memjs', servers: [{ address: src.address }, { address: dest.address }] })]
    },
    code: 68,
    message: /./,
    result: (r) => {
      assert.equal(r.json.result.skipped['too-large'], 1)
      assert.equal(r.json.result.moved, 50)
      assert.equal(r.json.result.state, 'deactivating')
      assert.match(r.json.result.samples[0].reason, /exceeds item_size_max/)
    },
  },
  {
    name: 'pool file without write permission',
    args: (c) => {
      const d = path.join(c.dir, 'ro')
      mkdirSync(d, { recursive: true })
      const file = c.pool(path.join('ro', 'pool.json'), { hash: 'memjs', servers: servers(...c.servers) })
      makeReadOnly(d)
      return ['drain', c.servers[0]!.address, '--yes', '--handoff', 'move', '--force', '--pool', file]
    },
    code: 3,
    errorCode: 'LOCK_FAILED',
    message: /cannot create the lock file .*ro\/pool\.json\.lock: .*(read-only file system|operation not permitted)/i,
    cleanup: (c) => undoReadOnly(path.join(c.dir, 'ro')),
  },
  {
    name: 'spool directory that cannot be created',
    args: (c) => ['drain', c.servers[0]!.address, '--yes', '--handoff', 'move', '--force', '--spool-dir', path.join(writeRaw(c, 'a-file', 'x'), 'spool'), '--pool', c.pool('spool.json', { hash: 'memjs', servers: servers(...c.servers) })],
    code: 3,
    errorCode: 'SPOOL_FAILED',
    message: /cannot write the key spool in .*a-file\/spool/,
  },
  {
    name: 'full disk for the spool (64 KiB tmpfs)',
    args: async (c) => {
      const src = await extraServer(c, {})
      await load(src.address, `spool-fill-key-with-a-long-name-${'p'.repeat(100)}:`, 3000)
      const mnt = path.join(c.dir, 'tiny')
      mkdirSync(mnt, { recursive: true })
      // mode=0700: a spool root must be writable by this user only (a tmpfs root is 1777 by default).
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k,mode=0700', 'tmpfs', mnt])
      return ['drain', src.address, '--yes', '--handoff', 'move', '--force', '--spool-dir', mnt, '--pool', c.pool('full.json', { hash: 'memjs', servers: [{ address: src.address }, ...servers(...c.servers)] })]
    },
    code: 3,
    errorCode: 'SPOOL_FAILED',
    message: /the spool directory .*tiny.* is full \(ENOSPC\)/,
    cleanup: (c) => execFileSync('umount', [path.join(c.dir, 'tiny')]),
  },
  // Issue 13: never act on the wrong server.
  {
    name: 'one server as 127.0.0.1 and localhost',
    args: async (c) => {
      const d = await dupServer(c)
      return ['drain', d.address, '--yes', '--handoff', 'move', '--force', '--pool', poolWith(c, 'spell-localhost.json', [{ address: d.address }, { address: `localhost:${d.port}` }])]
    },
    code: 3,
    errorCode: 'SAME_SERVER',
    message: /127\.0\.0\.1:\d+ \(servers\[3\] of .*spell-localhost\.json\) and localhost:\d+ \(servers\[4\] of .*\) are the same memcached/,
  },
  {
    name: 'one server as [::1] and [0:0:0:0:0:0:0:1]',
    skip: NO_IPV6,
    args: async (c) => {
      const d = await dupServer(c, { listen: '127.0.0.1,::1' })
      return ['drain', `[::1]:${d.port}`, '--yes', '--handoff', 'move', '--force', '--pool', poolWith(c, 'spell-v6.json', [{ address: `[::1]:${d.port}` }, { address: `[0:0:0:0:0:0:0:1]:${d.port}` }])]
    },
    code: 3,
    errorCode: 'SAME_SERVER',
    message: /\[::1\]:\d+ \(servers\[3\] .*\) and \[0:0:0:0:0:0:0:1\]:\d+ \(servers\[4\] .*\) are the same memcached/,
  },
  {
    name: 'one server as 127.0.0.1 and [::ffff:127.0.0.1]',
    skip: NO_IPV6,
    args: async (c) => {
      const d = await dupServer(c)
      return ['drain', d.address, '--yes', '--handoff', 'move', '--force', '--pool', poolWith(c, 'spell-mapped.json', [{ address: d.address }, { address: `[::ffff:127.0.0.1]:${d.port}` }])]
    },
    code: 3,
    errorCode: 'SAME_SERVER',
    message: /127\.0\.0\.1:\d+ \(servers\[3\] .*\) and \[::ffff:127\.0\.0\.1\]:\d+ \(servers\[4\] .*\) are the same memcached/,
  },
  {
    name: 'rebalance --add of a pool server under another spelling',
    args: async (c) => {
      const d = await dupServer(c)
      return ['rebalance', '--add', `localhost:${d.port}`, '--yes', '--handoff', 'move', '--force', '--pool', poolWith(c, 'spell-add.json', [{ address: d.address }])]
    },
    code: 3,
    errorCode: 'SAME_SERVER',
    message: /127\.0\.0\.1:\d+ \(servers\[3\] of .*spell-add\.json\) and localhost:\d+ \(servers\[4\] of the new pool\) are the same memcached/,
  },
  {
    name: 'rebalance --to a pool listing a server under another spelling',
    args: async (c) => {
      const d = await dupServer(c)
      const to = c.pool('spell-to-new.json', { hash: 'php-memcached-libketama', servers: [{ address: `localhost:${d.port}` }, { address: c.servers[1]!.address }] })
      return ['rebalance', '--to', to, '--yes', '--handoff', 'move', '--force', '--pool', poolWith(c, 'spell-to.json', [{ address: d.address }])]
    },
    code: 3,
    errorCode: 'SAME_SERVER',
    message: SAME_SERVER,
  },
  {
    name: 'mirror to a pool member under another spelling',
    args: async (c) => {
      const [active, d] = await Promise.all([dupServer(c), dupServer(c)])
      return ['mirror', active.address, `localhost:${d.port}`, '--delete', '--once', '--yes', '--pool', poolWith(c, 'spell-mirror.json', [{ address: d.address }])]
    },
    code: 3,
    errorCode: 'SAME_SERVER',
    message: /localhost:\d+ \(the passive\) and 127\.0\.0\.1:\d+ \(servers\[3\] of .*\(active\)\) are the same memcached/,
  },
  {
    name: 'mirror to the active under another spelling',
    args: async (c) => {
      const d = await dupServer(c)
      return ['mirror', d.address, `localhost:${d.port}`, '--once', '--yes', '--pool', poolWith(c, 'spell-mirror-self.json', [{ address: d.address }])]
    },
    code: 3,
    errorCode: 'SAME_SERVER',
    message: /localhost:\d+ \(the passive\) and 127\.0\.0\.1:\d+ \(the active\) are the same memcached/,
  },
  {
    name: 'purge of a removed entry that is an active server',
    args: async (c) => {
      const d = await dupServer(c)
      return ['purge', `localhost:${d.port}`, '--force', '--yes', '--pool', poolWith(c, 'spell-purge.json', [{ address: d.address }, { address: `localhost:${d.port}`, state: 'removed' }])]
    },
    code: 3,
    errorCode: 'SAME_SERVER',
    message: SAME_SERVER,
  },
  {
    name: 'warm a server listed twice',
    args: async (c) => {
      const d = await dupServer(c)
      return ['warm', c.servers[1]!.address, '--pool', poolWith(c, 'spell-warm.json', [{ address: d.address }, { address: `localhost:${d.port}` }], 'php-memcached-libketama', { replicas: 2 })]
    },
    code: 3,
    errorCode: 'SAME_SERVER',
    message: SAME_SERVER,
  },
  {
    name: 'a server named with another server\'s address',
    args: (c) => ['purge', c.servers[1]!.address, '--force', '--yes', '--pool', c.pool('name-addr.json', { hash: 'php-memcached-libketama', servers: [{ address: c.servers[0]!.address, name: c.servers[1]!.address }, ...servers(c.servers[1]!, c.servers[2]!)] })],
    code: 3,
    errorCode: 'POOL_INVALID',
    message: /servers\[0\]\.name: "127\.0\.0\.1:\d+" is the address of servers\[1\] \(servers\[1\]\.address "127\.0\.0\.1:\d+"\)/,
  },
  {
    name: 'state directory of another user, with a planted link',
    args: (c) => {
      // Another user's world-writable memdrain directory, with the journal's context file linked to a victim.
      const xdg = path.join(c.dir, 'xdg')
      const root = path.join(xdg, 'memdrain')
      const poolFile = poolWith(c, 'state-attack.json', [])
      const jdir = journalDirOf(root, poolFile, c.servers[0]!.address)
      mkdirSync(jdir, { recursive: true })
      writeFileSync(path.join(c.dir, 'victim'), 'precious\n')
      symlinkSync(path.join(c.dir, 'victim'), path.join(jdir, 'context'))
      for (const d of [root, jdir]) {
        chmodSync(d, 0o777)
        chownSync(d, 65534, 65534)
      }
      return ['drain', c.servers[0]!.address, '--yes', '--handoff', 'copy', '--switch-command', 'true', '--client-grace', '0', '--pool', poolFile]
    },
    env: (c) => ({ XDG_STATE_HOME: path.join(c.dir, 'xdg') }),
    code: 3,
    errorCode: 'STATE_DIR_UNSAFE',
    message: /the state directory .*xdg\/memdrain belongs to uid 65534, not to this user/,
    cleanup: (c) => assert.equal(readFileSync(path.join(c.dir, 'victim'), 'utf8'), 'precious\n', 'the victim of the planted link is untouched'),
  },
  {
    name: 'spool directory writable by every user',
    args: (c) => {
      const shared = path.join(c.dir, 'shared-spool')
      mkdirSync(shared)
      chmodSync(shared, 0o1777)
      return ['drain', c.servers[0]!.address, '--yes', '--handoff', 'move', '--force', '--spool-dir', shared, '--pool', poolWith(c, 'shared-spool.json', [])]
    },
    code: 3,
    errorCode: 'STATE_DIR_UNSAFE',
    message: /shared-spool can be written by every user \(mode 1777\)/,
  },
  ...[
    ['1e9', 'php-memcache-consistent-crc32', 1e9, /servers\[0\]\.weight: 1000000000 is larger than 1000, the largest weight php-memcache-consistent-crc32 takes/],
    ['1e6', 'php-memcache-consistent-fnv', 1e6, /servers\[0\]\.weight: 1000000 is larger than 1000/],
    ['1e5', 'php-memcache-consistent-crc32', 1e5, /servers\[0\]\.weight: 100000 is larger than 1000/],
    ['2^53−1', 'php-memcached-libketama', 2 ** 53 - 1, /servers\[0\]\.weight: 9007199254740991 is larger than 2147483647/],
  ].map(
    ([label, hash, weight, message]): Case => ({
      name: `weight ${String(label)} (${String(hash)})`,
      args: (c) => ['locate', 'some-key', '--pool', c.pool(`weight-${String(label)}.json`, { hash, servers: [{ address: c.servers[0]!.address, weight }, ...servers(c.servers[1]!)] })],
      code: 3,
      errorCode: 'POOL_INVALID',
      message: message as RegExp,
    }),
  ),
  {
    name: 'weights adding up past a bucket list (twemproxy-modula-fnv1a-64)',
    args: (c) => ['locate', 'some-key', '--pool', c.pool('weight-sum.json', { hash: 'twemproxy-modula-fnv1a-64', servers: [{ address: c.servers[0]!.address, weight: 600_000 }, { address: c.servers[1]!.address, weight: 600_000 }] })],
    code: 3,
    errorCode: 'POOL_INVALID',
    message: /servers: the weights add up to 1200000; twemproxy-modula-fnv1a-64 takes at most 1000000 in all/,
  },
  ...['Infinity', 'abc'].map(
    (w): Case => ({
      name: `weight ${w} on the command line`,
      args: (c) => ['locate', 'k', '--servers', `${c.servers[0]!.address}=${w},${c.servers[1]!.address}`, '--hash', 'php-memcached-libketama'],
      code: 2,
      errorCode: 'USAGE',
      message: new RegExp(`servers\\[0\\]\\.weight: must be a whole number > 0, got "${w}"`),
    }),
  ),
  ...['0.4', '0.6'].map(
    (b): Case => ({
      name: `bandwidth ${b}`,
      args: (c) => ['drain', c.servers[0]!.address, '--yes', `--bandwidth=${b}`, '--pool', poolWith(c, `bw${b}.json`, [])],
      code: 2,
      errorCode: 'USAGE',
      message: new RegExp(`--bandwidth "${b.replace('.', '\\.')}" is under 1KiB a second`),
    }),
  ),
  {
    name: 'a UTF-8 BOM in the pool file',
    args: (c) => ['locate', 'some-key', '--pool', writeRaw(c, 'bom.json', '\uFEFF' + JSON.stringify({ hash: 'php-memcached-libketama', servers: servers(...c.servers) }))],
    code: 0,
    message: /./,
    result: (r) => assert.match(r.json.result[0].server, /^127\.0\.0\.1:\d+$/),
  },
  {
    name: 'an address with a trailing space in the pool file',
    args: (c) => ['status', '--pool', c.pool('space.json', { hash: 'php-memcached-libketama', servers: [{ address: c.servers[0]!.address }, { address: `${c.servers[1]!.address} ` }] })],
    code: 3,
    errorCode: 'POOL_INVALID',
    message: /servers\[1\]\.address: "127\.0\.0\.1:\d+ " has whitespace around it/,
  },
  {
    name: 'a command argument with a trailing space',
    args: (c) => ['mark', `${c.servers[2]!.address} `, 'removed', '--yes', '--pool', poolWith(c, 'arg-space.json', [])],
    code: 0,
    message: /./,
    result: (r) => {
      assert.equal(r.json.result.to, 'removed')
      assert.match(r.json.result.server, /^127\.0\.0\.1:\d+$/, 'the server without the space')
    },
  },
  ...[
    ['"/"', 'cache/a:11211', /servers\[1\]\.address: Invalid server address "cache\/a:11211": the host "cache\/a" contains "\/"/],
    ['"$(…)"', '$(touch${IFS}/tmp/pwned):11211', /servers\[1\]\.address: Invalid server address .* contains "\$" "\(" "\{" "\}" "\/" "\)"/],
  ].map(
    ([label, address, message]): Case => ({
      name: `a host containing ${String(label)}`,
      args: (c) => ['status', '--pool', c.pool(`host-${(label as string).length}.json`, { hash: 'php-memcached-libketama', servers: [{ address: c.servers[0]!.address }, { address }] })],
      code: 3,
      errorCode: 'POOL_INVALID',
      message: message as RegExp,
    }),
  ),
]

function writeRaw(c: Ctx, name: string, text: string): string {
  const file = path.join(c.dir, name)
  writeFileSync(file, text)
  return file
}

const extra: MemcachedServer[] = []

/**
 * A loaded server of its own, for a case whose identity probe writes (and deletes) a key on the
 * server listed twice: the cases run concurrently and count the items of the shared servers.
 */
async function dupServer(c: Ctx, opts: StartOptions = {}): Promise<MemcachedServer> {
  const s = await extraServer(c, opts)
  await load(s.address, 'dup:', KEYS_PER_SERVER)
  return s
}
async function extraServer(_c: Ctx, opts: StartOptions): Promise<MemcachedServer> {
  const s = await startMemcached(opts)
  extra.push(s)
  return s
}

describe('bad input: every case answers with its exit code and message and changes nothing', { concurrency: 4 }, () => {
  const ctx: Ctx = {
    dir: '',
    servers: [],
    fakes: [],
    pool: (name, doc) => {
      const file = path.join(ctx.dir, name)
      writeFileSync(file, JSON.stringify(doc, null, 2) + '\n', { mode: 0o600 })
      return file
    },
  }
  before(async () => {
    ctx.dir = mkdtempSync(path.join(tmpdir(), 'memdrain-bad-input-'))
    ctx.servers = await Promise.all([startMemcached(), startMemcached(), startMemcached()])
    for (const [i, s] of ctx.servers.entries()) await load(s.address, `keep${i}:`, KEYS_PER_SERVER)
  })
  after(async () => {
    await Promise.all([...ctx.servers, ...extra].map((s) => s.kill()))
    await Promise.all(ctx.fakes.map((f) => f.close()))
    rmSync(ctx.dir, { recursive: true, force: true })
  })

  for (const c of CASES) {
    it(c.name, { skip: c.skip ?? false }, async () => {
      const args = await c.args(ctx)
      const poolArg = args.indexOf('--pool')
      const poolFile = poolArg >= 0 ? args[poolArg + 1]! : undefined
      const before = poolFile !== undefined ? readFileSync(poolFile) : undefined
      const addresses = poolFile !== undefined ? poolAddresses(before!.toString()) : []
      const itemsBefore = await Promise.all(addresses.map((a) => items(a).catch(() => -1)))
      let r: CliRun
      try {
        r = await runCli([...args, '--json'], { env: typeof c.env === 'function' ? c.env(ctx) : (c.env ?? {}), timeoutMs: 60_000 })
      } finally {
        c.cleanup?.(ctx)
      }
      assert.equal(r.code, c.code, `exit code; stdout: ${r.stdout.slice(0, 600)} stderr: ${r.stderr.slice(0, 300)}`)
      assert.equal(r.json?.status, c.code, 'one JSON envelope with the status')
      if (c.result !== undefined) {
        c.result(r)
      } else {
        assert.equal(r.json.error.code, c.errorCode)
        assert.match(r.json.error.message, c.message)
        assert.ok(r.json.error.suggestions.length > 0 || c.code === 2, `a refusal says what to do: ${r.stdout}`)
        if (poolFile !== undefined) assert.deepEqual(readFileSync(poolFile), before, 'the pool file is byte for byte unchanged')
      }
      // No server flushed or emptied: every reachable server of the pool holds what it held.
      const itemsAfter = await Promise.all(addresses.map((a) => items(a).catch(() => -1)))
      if (c.result === undefined) assert.deepEqual(itemsAfter, itemsBefore, 'items per server unchanged')
      else for (const [i, n] of itemsAfter.entries()) assert.ok(n >= 0 && (itemsBefore[i]! <= 0 || n > 0), 'no server flushed')
    })
  }

  it('keys with every byte value memcached allows, and 250-byte keys, move to exactly their owner', async () => {
    const [a, b, c] = await Promise.all([startMemcached(), startMemcached(), startMemcached()])
    extra.push(a, b, c)
    // One key per byte value 0x00-0xff (the binary protocol allows any byte; the meta protocol
    // needs base64 for controls, space and 0x7f), plus 250-byte printable keys.
    const keys: Buffer[] = []
    for (let byte = 0; byte < 256; byte++) keys.push(Buffer.concat([Buffer.from('byte-'), Buffer.from([byte]), Buffer.from('-end')]))
    for (let i = 0; i < 20; i++) keys.push(Buffer.from(`${i}:`.padEnd(250, String.fromCharCode(33 + i))))
    keys.push(Buffer.concat([Buffer.alloc(180, 0x7e), Buffer.from([0x01])])) // 181 bytes needing base64: still addressable
    const conn = await MetaConnection.connect(parseAddress(a.address))
    const p = new MetaPayload()
    keys.forEach((k, i) => p.command('ms', k).size(8).flag('F', i).flag('T', 0).flags('q').end(Buffer.from(`val${String(i).padStart(5, '0')}`)))
    const errors: string[] = []
    await conn.batch(p.noop().take(), (r) => errors.push(r.line()))
    await conn.close()
    assert.deepEqual(errors, [])
    const file = ctx.pool('bytes.json', { hash: 'php-memcached-libketama', servers: servers(a, b, c) })
    const r = await runCli(['drain', a.address, '--pool', file, '--yes', '--json', '--handoff', 'move', '--force', '--client-grace', '0'])
    assert.equal(r.code, 0, r.stdout)
    assert.equal(r.json.result.moved, keys.length)
    const pool = parsePoolText(readFileSync(file, 'utf8'), file)
    const remaining = pool.servers.filter((s) => s.state === 'active')
    const pp = poolPlacement({ ...pool, servers: remaining }, remaining)
    for (const [i, key] of keys.entries()) {
      const owner = remaining[pp.placement.owner(key)]!.address
      const c2 = await MetaConnection.connect(parseAddress(owner))
      const got = (await getAll(c2, [key])).get(key.toString('hex'))
      await c2.close()
      assert.equal(got?.value.toString(), `val${String(i).padStart(5, '0')}`, `key ${key.toString('hex')}`)
      assert.equal(got.flags, i)
    }
  })

  it('docs/errors.md lists every case of this table', () => {
    const doc = readFileSync(path.join(REPO_ROOT, 'docs/errors.md'), 'utf8')
    for (const c of CASES) assert.ok(doc.includes(`| ${c.name} |`), `docs/errors.md has no row "| ${c.name} |"`)
  })
})

function poolAddresses(text: string): string[] {
  try {
    const doc = JSON.parse(text) as { servers?: { address?: string }[] }
    // Every loopback spelling (the same server may be listed under two).
    return (doc.servers ?? []).map((s) => s.address ?? '').filter((a) => /^(127\.0\.0\.1|localhost|\[[0-9a-f:.]+\]):\d+$/i.test(a) && !a.endsWith(':1'))
  } catch {
    return []
  }
}
