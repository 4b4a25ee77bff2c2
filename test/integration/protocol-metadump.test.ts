import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createServer } from 'node:net'
import {
  HD,
  keyEncoding,
  keyToken,
  MAX_BASE64_KEY_LENGTH,
  MetaConnection,
  MetaPayload,
  uriDecodeInto,
  VA,
  type DumpEntry,
} from '../../src/core/protocol/index.js'
import { metadump } from '../../src/core/protocol/metadump.js'
import { MemdrainError } from '../../src/core/errors.js'
import { rejectsWithCode } from '../helpers/assert.js'
import { fakeServer, rawCommand, startMemcached, type MemcachedServer } from '../helpers/memcached.js'

function hex(b: Uint8Array): string {
  return Buffer.from(b).toString('hex')
}


/** Collects a dump as hex(key) → copy of the entry. */
async function dumpAll(addr: { host: string; port: number }): Promise<Map<string, Omit<DumpEntry, 'key'>>> {
  const got = new Map<string, Omit<DumpEntry, 'key'>>()
  const r = await metadump(addr, {
    onEntry: (e) => {
      const { key, ...rest } = e
      got.set(hex(key), { ...rest })
    },
  })
  assert.equal(r.entries, got.size)
  // A hash walk over a table that is not growing lists each key once: the caller need not deduplicate.
  assert.equal(r.mode, 'hash')
  assert.equal(r.distinctKeys, true)
  return got
}

const SPECIAL_KEYS: Buffer[] = [
  Buffer.from('plain-ascii:key/with~punct%25'),
  Buffer.from('100%'),
  Buffer.from('ключ-日本語-🙂'), // UTF-8: sent as text
  Buffer.from([0x80, 0x81, 0xfe, 0xff]),
  Buffer.from('has space'), // base64 with b
  Buffer.from('tab\there\r\nnewline'),
  Buffer.from([0x00, 0x01, 0x7f, 0x20, 0x25]),
  Buffer.alloc(250, 0x61), // longest ASCII key
  Buffer.from('é'.repeat(125)), // 250 bytes of UTF-8 (0xc3 0xa9 ...)
  Buffer.alloc(MAX_BASE64_KEY_LENGTH, 0x20), // longest key that needs base64
]

describe('keys', () => {
  it('chooses text, base64 or unaddressable', () => {
    assert.equal(keyEncoding(Buffer.from('abc')), 'text')
    assert.equal(keyEncoding(Buffer.from('é')), 'text')
    assert.equal(keyEncoding(Buffer.alloc(250, 0xff)), 'text')
    assert.equal(keyEncoding(Buffer.from('a b')), 'base64')
    assert.equal(keyEncoding(Buffer.from([0x7f])), 'base64')
    assert.equal(keyEncoding(Buffer.alloc(186, 0x0a)), 'base64')
    assert.equal(keyEncoding(Buffer.alloc(187, 0x0a)), 'unaddressable')
    assert.equal(keyEncoding(Buffer.alloc(251, 0x61)), 'unaddressable')
    assert.equal(keyEncoding(Buffer.alloc(0)), 'unaddressable')
    assert.deepEqual(keyToken(Buffer.from('a b')), { token: 'YSBi', base64: true })
    assert.throws(() => new MetaPayload().command('mg', Buffer.alloc(200, 0x20)), (e: unknown) => e instanceof MemdrainError && e.code === 'KEY_UNADDRESSABLE')
  })

  it('URI-decodes dump keys to bytes', () => {
    const src = Buffer.from('a%20b%e9%FF%2%zz%')
    const out = Buffer.alloc(src.length)
    const n = uriDecodeInto(src, 0, src.length, out)
    assert.equal(hex(out.subarray(0, n)), hex(Buffer.concat([Buffer.from('a b'), Buffer.from([0xe9, 0xff]), Buffer.from('%2%zz%')])))
  })

  describe('round trip through memcached', () => {
    let s: MemcachedServer
    let c: MetaConnection
    before(async () => {
      s = await startMemcached()
      c = await MetaConnection.connect(s)
    })
    after(async () => {
      await c?.close()
      await s?.kill()
    })

    it('ms then mg (k) gives back the same bytes for every special key', async () => {
      const p = new MetaPayload()
      SPECIAL_KEYS.forEach((key, i) => {
        const v = Buffer.from(`v${i}`)
        p.command('ms', key).size(v.length).flag('T', 0).flag('O', i).end(v)
      })
      SPECIAL_KEYS.forEach((key, i) => p.command('mg', key).flags('k v').flag('O', 100 + i).end())
      p.noop()
      const stored: number[] = []
      const read = new Map<number, { key: string; value: string }>()
      await c.batch(p.take(), (r) => {
        if (r.opaque < 100) {
          assert.equal(r.status, HD, r.line())
          stored.push(r.opaque)
          return
        }
        assert.equal(r.status, VA, r.line())
        // `k` echoes the key base64-encoded with `b` when it was sent that way.
        const k = r.flagBytes('k')!
        const key = r.hasFlag('b') ? Buffer.from(k.toString('latin1'), 'base64') : Buffer.from(k)
        read.set(r.opaque - 100, { key: hex(key), value: r.value!.toString() })
      })
      assert.equal(stored.length, SPECIAL_KEYS.length)
      SPECIAL_KEYS.forEach((key, i) => assert.deepEqual(read.get(i), { key: hex(key), value: `v${i}` }, `key ${i}`))
    })

    it('keys with bytes 0x80-0xff written as text are the same item as the base64 form', async () => {
      const key = Buffer.from([0x6b, 0x80, 0xc3, 0xa9, 0xff])
      const v = Buffer.from('same')
      const p = new MetaPayload()
      p.command('ms', key).size(v.length).flag('O', 1).end(v)
      p.raw(`mg ${key.toString('base64')} b v O2\r\n`).noop()
      const got: string[] = []
      await c.batch(p.take(), (r) => got.push(`${r.line()}|${r.value?.toString() ?? ''}`))
      assert.deepEqual(got, ['HD O1|', 'VA 4 O2|same'])
    })
  })
})

describe('metadump', () => {
  let s: MemcachedServer
  const written = new Map<string, { ttl: number; flags: number }>()
  before(async () => {
    s = await startMemcached({ memoryMb: 64 })
    const c = await MetaConnection.connect(s)
    const p = new MetaPayload()
    const add = (key: Buffer, ttl: number, flags: number): void => {
      const v = Buffer.from(`value of ${hex(key)}`)
      p.command('ms', key).size(v.length).flag('F', flags).flag('T', ttl).flags('q').flag('O', written.size).end(v)
      written.set(hex(key), { ttl, flags })
    }
    for (let i = 0; i < 3000; i++) add(Buffer.from(`user:${i}:profile`), i % 3 === 0 ? 0 : 3600 + i, i)
    for (let i = 0; i < 200; i++) add(Buffer.from(`ünïcødé:${i}:€`), 0, 7) // UTF-8
    for (let i = 0; i < 100; i++) add(Buffer.from([0x80 + i, 0xff, 0x20, 0x25, i]), 0, 8) // binary, base64 path
    for (let i = 0; i < 50; i++) add(Buffer.concat([Buffer.from(`${i}:`), Buffer.alloc(250 - `${i}:`.length, 0x7a)]), 0, 9)
    for (let i = 0; i < 50; i++) add(Buffer.concat([Buffer.from(`${i}:`), Buffer.alloc(250 - `${i}:`.length, 0xe9)]), 0, 10)
    SPECIAL_KEYS.forEach((k) => add(k, 0, 11))
    p.noop()
    const errors: string[] = []
    await c.batch(p.take(), (r) => errors.push(r.line()))
    assert.deepEqual(errors, [])
    await c.close()
  })
  after(() => s?.kill())

  it('lists every key with decoded bytes and its fields', async () => {
    const now = Math.floor(Date.now() / 1000)
    const got = await dumpAll(s)
    assert.equal(got.size, written.size)
    for (const [key, w] of written) {
      const e = got.get(key)
      assert.ok(e !== undefined, `missing ${key}`)
      if (w.ttl === 0) assert.equal(e.exp, -1)
      else assert.ok(Math.abs(e.exp - (now + w.ttl)) <= 5, `exp ${e.exp} vs ${now + w.ttl}`)
      assert.ok(Math.abs(e.la - now) <= 5)
      assert.match(e.cas, /^[1-9]\d*$/)
      assert.ok(e.size > 0 && e.cls > 0)
      assert.equal(e.fetched, false)
      assert.ok(e.flags === -1 || e.flags === w.flags) // 1.6.18 prints no flags=
    }
  })

  it('accept sees every key first; only the keys it takes reach onEntry, with every field', async () => {
    const full = await dumpAll(s)
    const asked = new Set<string>()
    const taken = new Map<string, Omit<DumpEntry, 'key'>>()
    // Every other key by its last byte: keys of each encoding (text, UTF-8, base64) on both sides.
    const wanted = (key: Buffer): boolean => key[key.length - 1]! % 2 === 0
    const r = await metadump(s, {
      accept: (key) => {
        asked.add(hex(key))
        return wanted(key)
      },
      onEntry: (e) => {
        const { key, ...rest } = e
        assert.ok(wanted(key), `onEntry got ${hex(key)}, which accept refused`)
        taken.set(hex(key), { ...rest, cas: e.cas })
      },
    })
    assert.equal(r.entries, written.size) // refused lines are counted too
    assert.deepEqual([...asked].sort(), [...written.keys()].sort())
    const expected = [...full].filter(([k]) => wanted(Buffer.from(k, 'hex')))
    assert.ok(expected.length > 0 && expected.length < written.size)
    assert.equal(taken.size, expected.length)
    for (const [k, e] of expected) assert.deepEqual(taken.get(k), e, `fields of ${k}`)
  })

  it('passes one reused entry object per call (documented)', async () => {
    const objects = new Set<DumpEntry>()
    const r = await metadump(s, { onEntry: (e) => objects.add(e), mode: 'all' })
    assert.equal(r.mode, 'all')
    assert.equal(r.entries, written.size)
    assert.equal(r.distinctKeys, false) // an LRU walk can list a bumped key twice
    assert.equal(objects.size, 1)
  })

  it('stops when onEntry throws, and on abort (INTERRUPTED, exit 69)', async () => {
    let n = 0
    await assert.rejects(
      metadump(s, {
        onEntry: () => {
          if (++n === 10) throw new Error('spool full')
        },
      }),
      /spool full/,
    )
    const ac = new AbortController()
    let seen = 0
    const err = await rejectsWithCode(
      metadump(s, {
        signal: ac.signal,
        onEntry: () => {
          if (++seen === 5) ac.abort()
        },
      }),
      'INTERRUPTED',
      69,
    )
    assert.ok(err.message.includes(s.address))
  })

  it('two dumps at once: the second waits for the busy crawler and still gets everything', async () => {
    // Make the first dump long enough to overlap.
    const c = await MetaConnection.connect(s)
    const p = new MetaPayload()
    for (let i = 0; i < 100_000; i++) p.command('ms', Buffer.from(`filler:${i}`)).size(1).flags('q').end(Buffer.from('x'))
    await c.batch(p.noop().take(), () => {})
    await c.close()
    // 103k items pass 1.5 × 2^16: memcached expands its hash table at its next clock tick.
    // metadump waits for that first (see expansionWaitMs: 1.6.18 can deadlock otherwise).
    const [a, b] = await Promise.all([
      metadump(s, { onEntry: () => {}, retryDelayMs: 20 }),
      metadump(s, { onEntry: () => {}, retryDelayMs: 20 }),
    ])
    assert.equal(a.entries, written.size + 100_000)
    assert.equal(b.entries, written.size + 100_000)
    assert.ok(a.busyRetries + b.busyRetries >= 1, 'one of the dumps should have seen BUSY')
    const stats = await rawCommand(s.address, 'stats\r\n')
    assert.match(stats, /hash_power_level 17\r\n/)
    assert.match(stats, /hash_is_expanding 0\r\n/)
  })

  it('a paused server → SERVER_TIMEOUT after idleTimeoutMs', async () => {
    s.pause()
    try {
      await rejectsWithCode(metadump(s, { onEntry: () => {}, idleTimeoutMs: 300 }), 'SERVER_TIMEOUT', 3)
    } finally {
      s.resume()
    }
    // The server answers again once continued (poll: a loaded machine may take a moment).
    let reply = ''
    for (let deadline = Date.now() + 10_000; !reply.startsWith('VERSION ') && Date.now() < deadline; ) {
      reply = await rawCommand(s.address, 'version\r\n', { idleMs: 1000 })
    }
    assert.match(reply, /^VERSION /)
  })
})

describe('metadump refusals', () => {
  it('-X → DUMPS_DISABLED (exit 3) with what to do', async () => {
    const s = await startMemcached({ disableDumps: true })
    try {
      const err = await rejectsWithCode(metadump(s, { onEntry: () => {} }), 'DUMPS_DISABLED', 3)
      assert.match(err.message, /-X/)
      assert.ok(err.message.includes(s.address))
      assert.ok(err.suggestions.length > 0)
    } finally {
      await s.kill()
    }
  })

  it('-o no_lru_crawler → CRAWLER_DISABLED (exit 3)', async () => {
    const s = await startMemcached({ noLruCrawler: true })
    try {
      const err = await rejectsWithCode(metadump(s, { onEntry: () => {} }), 'CRAWLER_DISABLED', 3)
      assert.ok(err.suggestions.some((x) => x.includes('lru_crawler enable')))
    } finally {
      await s.kill()
    }
  })

  it('unreachable server → SERVER_UNREACHABLE', async () => {
    const fake = await fakeServer(() => null)
    const addr = { host: fake.host, port: fake.port }
    await fake.close()
    await rejectsWithCode(metadump(addr, { onEntry: () => {} }), 'SERVER_UNREACHABLE', 3)
  })
})

describe('metadump against scripted servers', () => {
  it('retries BUSY and "ERROR locked", falls back from hash to all, reads OK/flags/trailing spaces', async () => {
    let calls = 0
    const fake = await fakeServer((line) => {
      calls++
      if (line === 'lru_crawler metadump hash') return 'CLIENT_ERROR bad command line format'
      if (calls === 2) return 'BUSY currently processing crawler request'
      if (calls === 3) return 'ERROR locked try again later'
      // 1.6.43+ style: OK first, a trailing space, flags=, unknown fields.
      return 'OK\r\nkey=a%20b exp=-1 la=1700000000 cas=18446744073709551615 fetch=no cls=1 size=70 flags=3 future=1 \nkey=z exp=1700003600 la=1700000001 cas=2 fetch=yes cls=2 size=90 \r\nEND\r\n'
    })
    try {
      const got: { key: string; exp: number; la: number; cas: string; fetched: boolean; cls: number; size: number; flags: number }[] = []
      const r = await metadump(fake, { onEntry: (e) => got.push({ ...e, key: e.key.toString('latin1') }), retryDelayMs: 5, expansionWaitMs: 0 })
      assert.deepEqual(r, { entries: 2, mode: 'all', busyRetries: 2, distinctKeys: false })
      assert.deepEqual(fake.received, ['lru_crawler metadump hash', 'lru_crawler metadump all', 'lru_crawler metadump all', 'lru_crawler metadump all'])
      assert.deepEqual(got, [
        { key: 'a b', exp: -1, la: 1700000000, cas: '18446744073709551615', fetched: false, cls: 1, size: 70, flags: 3 },
        { key: 'z', exp: 1700003600, la: 1700000001, cas: '2', fetched: true, cls: 2, size: 90, flags: -1 },
      ])
    } finally {
      await fake.close()
    }
  })

  it('gives up after maxRetries with CRAWLER_BUSY', async () => {
    const fake = await fakeServer(() => 'BUSY currently processing crawler request')
    try {
      const err = await rejectsWithCode(metadump(fake, { onEntry: () => {}, retryDelayMs: 1, maxRetries: 3, expansionWaitMs: 0 }), 'CRAWLER_BUSY')
      assert.match(err.message, /4 attempts/)
      assert.equal(fake.received.length, 4)
    } finally {
      await fake.close()
    }
  })

  it('a line split across many chunks', async () => {
    const body = 'key=%E9%E9 exp=-1 la=1 cas=5 fetch=no cls=1 size=60\n'.repeat(200) + 'END\r\n'
    // A server that writes the dump in 7-byte pieces.
    const server = createServer((sock) => {
      sock.once('data', async () => {
        for (let i = 0; i < body.length; i += 7) {
          sock.write(body.slice(i, i + 7))
          await new Promise((r) => setImmediate(r))
        }
      })
    }).listen(0, '127.0.0.1')
    await new Promise((r) => server.once('listening', r))
    try {
      let n = 0
      const r = await metadump(
        { host: '127.0.0.1', port: (server.address() as { port: number }).port },
        {
          expansionWaitMs: 0,
          onEntry: (e) => {
            assert.equal(hex(e.key), 'e9e9')
            assert.equal(e.cas, '5')
            n++
          },
        },
      )
      assert.equal(r.entries, 200)
      assert.equal(n, 200)
    } finally {
      server.close()
    }
  })

  it('waits while the hash table is expanding or due to expand before dumping', async () => {
    let statsCalls = 0
    const fake = await fakeServer((line) => {
      if (line === 'stats') {
        statsCalls++
        // due (curr_items > 1.5 × 2^16), then expanding, then done
        if (statsCalls === 1) return 'STAT hash_power_level 16\r\nSTAT hash_is_expanding 0\r\nSTAT curr_items 100000\r\nEND'
        if (statsCalls === 2) return 'STAT hash_power_level 16\r\nSTAT hash_is_expanding 1\r\nSTAT curr_items 100000\r\nEND'
        return 'STAT hash_power_level 17\r\nSTAT hash_is_expanding 0\r\nSTAT curr_items 100000\r\nEND'
      }
      return 'key=a exp=-1 la=1 cas=1 fetch=no cls=1 size=50\nEND'
    })
    try {
      const r = await metadump(fake, { onEntry: () => {} })
      assert.equal(r.entries, 1)
      // The last stats, after the walk, finds the table as it was before it: each key came once.
      assert.deepEqual(fake.received, ['stats', 'stats', 'stats', 'lru_crawler metadump hash', 'stats'])
      assert.equal(r.distinctKeys, true)
    } finally {
      await fake.close()
    }
  })

  it('a table that grew during the walk, or is expanding at its end: the keys may repeat', async () => {
    for (const after of ['STAT hash_power_level 17\r\nSTAT hash_is_expanding 0', 'STAT hash_power_level 16\r\nSTAT hash_is_expanding 1']) {
      let statsCalls = 0
      const fake = await fakeServer((line) => {
        if (line === 'stats') return ++statsCalls === 1 ? 'STAT hash_power_level 16\r\nSTAT hash_is_expanding 0\r\nSTAT curr_items 10\r\nEND' : `${after}\r\nSTAT curr_items 10\r\nEND`
        return 'key=a exp=-1 la=1 cas=1 fetch=no cls=1 size=50\nEND'
      })
      try {
        const r = await metadump(fake, { onEntry: () => {} })
        assert.deepEqual(fake.received, ['stats', 'lru_crawler metadump hash', 'stats'])
        assert.deepEqual(r, { entries: 1, mode: 'hash', busyRetries: 0, distinctKeys: false })
      } finally {
        await fake.close()
      }
    }
  })

  it('a garbage reply → PROTOCOL_ERROR', async () => {
    const fake = await fakeServer(() => 'HTTP/1.1 400 Bad Request')
    try {
      await rejectsWithCode(metadump(fake, { onEntry: () => {} }), 'PROTOCOL_ERROR')
    } finally {
      await fake.close()
    }
  })
})
