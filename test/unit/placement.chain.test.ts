/**
 * Placement properties beyond the golden vectors: chain() for every strategy, the hash
 * primitives against known values, and the construction errors.
 */

import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { test } from 'node:test'

import {
  crc32,
  fnv1a32Signed,
  fnv1a64LowSigned,
  HASH_INFO,
  fractionalWeights,
  HASH_NAMES,
  isHashName,
  javaHashCode,
  ketamaPointsPerServer,
  md5Digest,
  md5Word0,
  md5Words,
  murmur3_32,
  murmur3_32x2,
  oneAtATimeSigned,
  placementFor,
} from '../../src/core/placement/index.js'
import { pythonBytesRepr } from '../../src/core/placement/text.js'
import type { PlacementServer } from '../../src/core/placement/index.js'

const enc = new TextEncoder()
const bytes = (s: string): Uint8Array => enc.encode(s)

function pool(n: number, opts: { port0?: number; weights?: number[]; names?: boolean } = {}): PlacementServer[] {
  const out: PlacementServer[] = []
  for (let i = 0; i < n; i++) {
    const host = `10.0.0.${i + 1}`
    const port = opts.port0 === undefined ? 11211 : opts.port0 + i
    // hostname: what spymemcached-ketama-libmemcached needs for an IP literal (others ignore it).
    out.push({ address: `${host}:${port}`, host, port, weight: opts.weights?.[i] ?? 1, name: opts.names === true ? `cache-${i}` : undefined, hostname: `mc-${i}.internal` })
  }
  return out
}

const KEYS = [
  '',
  'a',
  'user:42',
  'sess_0123456789abcdef',
  'héllo wörld',
  '中文键',
  'emoji 😀 key',
  "it's",
  'say "hi"',
  'back\\slash',
  'x'.repeat(250),
  ...Array.from({ length: 200 }, (_, i) => `key:${i}:${(i * 7919) % 1000}`),
].map(bytes)

for (const hash of HASH_NAMES) {
  test(`chain properties: ${hash}`, () => {
    for (const size of [1, 2, 3, 5, 8]) {
      // mcrouter-weighted-ch3's weights are fractions, down to 0 (a server that keeps only the keys whose every try failed).
      const weights = fractionalWeights(hash) ? [1, 0.5, 0.25, 0, 1, 0.75, 0.1, 1] : [1, 2, 3, 1, 5, 1, 2, 1]
      for (const servers of [pool(size, { names: true }), pool(size, { port0: 21211, names: true, weights })]) {
        const p = placementFor(hash, servers)
        assert.equal(p.servers.length, size)
        const reused: number[] = [99, 98, 97, 96, 95, 94, 93, 92, 91, 90, 89]
        for (const key of KEYS) {
          const owner = p.owner(key)
          assert.ok(Number.isInteger(owner) && owner >= 0 && owner < size, `owner ${owner} out of range`)
          assert.equal(p.owner(key), owner, 'owner is deterministic')
          for (let n = 0; n <= size + 2; n++) {
            const chain = p.chain(key, n)
            assert.equal(chain.length, Math.min(n, size), `chain length for n=${n} of ${size}`)
            assert.equal(new Set(chain).size, chain.length, `chain has duplicates: ${chain.join(',')}`)
            for (const s of chain) assert.ok(Number.isInteger(s) && s >= 0 && s < size)
            if (n > 0) assert.equal(chain[0], owner, 'chain starts with the owner')
            assert.deepEqual(p.chain(key, n), chain, 'chain is deterministic')
            const got = p.chain(key, n, reused)
            assert.equal(got, reused, 'out is returned')
            assert.deepEqual(got, chain, 'out is cleared and filled')
          }
          // a longer chain extends a shorter one
          const full = p.chain(key, size)
          for (let n = 1; n < size; n++) assert.deepEqual(p.chain(key, n), full.slice(0, n))
        }
        assert.deepEqual(p.chain(KEYS[2]!, -1), [])
        assert.deepEqual(p.chain(KEYS[2]!, Number.NaN), [])
        assert.deepEqual(p.chain(KEYS[2]!, 1.9), [p.owner(KEYS[2]!)])
      }
    }
  })
}

test('registry: names, info, type guard', () => {
  // 26 client strategies + twemproxy's 12 hashes × {ketama, modula} × {host:port, named}
  assert.equal(HASH_NAMES.length, 26 + 48)
  assert.equal(new Set(HASH_NAMES).size, HASH_NAMES.length)
  for (const old of ['twemproxy-ketama-md5', 'twemproxy-ketama-md5-named', 'twemproxy-modula-fnv1a-64', 'twemproxy-modula-fnv1a-64-named']) assert.ok(isHashName(old))
  for (const h of HASH_NAMES) {
    assert.ok(isHashName(h))
    const info = HASH_INFO[h]
    assert.ok(info.client.length > 0 && info.version.length > 0 && info.configuration.length > 0 && info.algorithm.length > 0)
    assert.ok(info.kind === 'consistent' || info.kind === 'modulo')
    assert.equal(info.usesNames, h.endsWith('-named'))
  }
  assert.equal(isHashName('ketama'), false)
  assert.equal(isHashName('memjs '), false)
  assert.deepEqual(Object.keys(HASH_INFO).sort(), [...HASH_NAMES].sort())
})

test('errors: empty server list', () => {
  for (const h of HASH_NAMES) assert.throws(() => placementFor(h, []), /server list is empty/)
})

test('errors: named strategies need every name', () => {
  const servers = pool(3, { names: true })
  const missing = servers.map((s, i) => (i === 1 ? { ...s, name: undefined } : s))
  for (const h of HASH_NAMES.filter((x) => x.endsWith('-named'))) {
    assert.throws(() => placementFor(h, missing), (e: unknown) => e instanceof Error && /server 1 \(10\.0\.0\.2:11211\) has no name/.test(e.message))
    const dup = servers.map((s) => ({ ...s, name: 'same' }))
    assert.throws(() => placementFor(h, dup), /same name/)
  }
  // the unnamed strategies do not need names
  for (const h of HASH_NAMES.filter((x) => !x.endsWith('-named'))) placementFor(h, pool(3))
})

test('errors: weights must be positive integers', () => {
  for (const w of [0, -1, 1.5, Number.NaN]) {
    const servers = pool(2).map((s, i) => (i === 1 ? { ...s, weight: w } : s))
    assert.throws(() => placementFor('twemproxy-ketama-md5', servers), /server 1 .* weight/)
  }
})

test('unknown strategy at runtime', () => {
  assert.throws(() => placementFor('nope' as never, pool(2)), /unknown strategy nope/)
})

// -------------------------------------------------------------------------------------------
// Hash primitives

test('crc32 known values', () => {
  assert.equal(crc32(bytes('123456789')), 0xcbf43926)
  assert.equal(crc32(bytes('')), 0)
  assert.equal(crc32(bytes('The quick brown fox jumps over the lazy dog')), 0x414fa339)
  assert.equal(crc32(bytes('xx123456789yy'), 2, 11), 0xcbf43926)
})

test('murmur3_32 known values', () => {
  assert.equal(murmur3_32(bytes('')), 0)
  assert.equal(murmur3_32(bytes(''), 0, 0, 1), 0x514e28b7)
  assert.equal(murmur3_32(bytes(''), 0, 0, 0xffffffff), 0x81f16f39)
  assert.equal(murmur3_32(new Uint8Array([0, 0, 0, 0])), 0x2362f9de)
  assert.equal(murmur3_32(bytes('hello')), 0x248bfa47)
  assert.equal(murmur3_32(bytes('Hello, world!'), 0, 13, 1234), 0xfaf6cdb3)
  assert.equal(murmur3_32(bytes('The quick brown fox jumps over the lazy dog')), 0x2e4ff723)
  assert.equal(murmur3_32(bytes('aaa'), 0, 3, 0x9747b28c), 0x283e0130)
  assert.equal(murmur3_32(bytes('abcd'), 0, 4, 0x9747b28c), 0xf0478627)
})

test('murmur3_32x2 is murmur3_32 under each of its two seeds', () => {
  const out = new Uint32Array(4)
  for (let len = 0; len < 80; len++) {
    const data = randomBytes(len + 6)
    for (const [a, b] of [[0x9747b28c, 0x5bd1e995], [0, 0xffffffff], [1, 1]] as const) {
      murmur3_32x2(data, 3, 3 + len, a, b, out, 1)
      assert.equal(out[1], murmur3_32(data, 3, 3 + len, a), `seed ${a}, ${len} bytes`)
      assert.equal(out[2], murmur3_32(data, 3, 3 + len, b), `seed ${b}, ${len} bytes`)
    }
  }
})

test('md5 matches node:crypto', () => {
  const words = new Uint32Array(4)
  for (let len = 0; len < 300; len++) {
    for (let r = 0; r < 3; r++) {
      const data = randomBytes(len)
      const expected = createHash('md5').update(data).digest()
      assert.deepEqual(Buffer.from(md5Digest(data)), expected, `md5 of ${len} bytes`)
      assert.equal(md5Word0(data), expected.readUInt32LE(0))
      md5Words(data, words)
      for (let g = 0; g < 4; g++) assert.equal(words[g], expected.readUInt32LE(4 * g))
    }
  }
  // sub-ranges
  const big = randomBytes(200)
  assert.deepEqual(Buffer.from(md5Digest(big, 13, 150)), createHash('md5').update(big.subarray(13, 150)).digest())
  assert.equal(Buffer.from(md5Digest(bytes('abc'))).toString('hex'), '900150983cd24fb0d6963f7d28e17f72')
})

test('fnv1a variants (signed bytes)', () => {
  assert.equal(fnv1a32Signed(bytes('')), 0x811c9dc5)
  assert.equal(fnv1a32Signed(bytes('a')), 0xe40c292c)
  assert.equal(fnv1a32Signed(bytes('foobar')), 0xbf9cf968)
  // low 32 bits of 64-bit FNV-1a for ASCII
  assert.equal(fnv1a64LowSigned(bytes('')), 0x84222325)
  assert.equal(fnv1a64LowSigned(bytes('a')), 0x8601ec8c >>> 0) // fnv1a64("a") = 0xaf63dc4c8601ec8c
  assert.equal(fnv1a64LowSigned(bytes('foobar')), 0xf73967e8) // fnv1a64("foobar") = 0x85944171f73967e8
  // a byte >= 0x80 enters sign-extended: compare with 64-bit FNV-1a over sign-extended bytes
  for (const s of ['é', '中文', '😀x']) {
    const data = bytes(s)
    let h32 = 0x811c9dc5n
    let h64 = 0xcbf29ce484222325n
    for (const b of data) {
      const sext = BigInt(b >= 0x80 ? b - 256 : b)
      h32 = ((h32 ^ (sext & 0xffffffffn)) * 0x01000193n) & 0xffffffffn
      h64 = ((h64 ^ (sext & 0xffffffffffffffffn)) * 0x100000001b3n) & 0xffffffffffffffffn
    }
    assert.equal(fnv1a32Signed(data), Number(h32))
    assert.equal(fnv1a64LowSigned(data), Number(h64 & 0xffffffffn))
  }
})

test('one_at_a_time (signed bytes)', () => {
  const ref = (data: Uint8Array): number => {
    let h = 0n
    const m = 0xffffffffn
    for (const b of data) {
      h = (h + (BigInt(b >= 0x80 ? b - 256 : b) & m)) & m
      h = (h + (h << 10n)) & m
      h ^= h >> 6n
    }
    h = (h + (h << 3n)) & m
    h ^= h >> 11n
    h = (h + (h << 15n)) & m
    return Number(h)
  }
  assert.equal(oneAtATimeSigned(bytes('a')), 0xca2e9442)
  assert.equal(oneAtATimeSigned(bytes('The quick brown fox jumps over the lazy dog')), 0x519e91f5)
  for (const s of ['', 'user:42', 'héllo', '中文键', '😀']) assert.equal(oneAtATimeSigned(bytes(s)), ref(bytes(s)), s)
})

test('java hashCode', () => {
  const units = (s: string): number[] => Array.from({ length: s.length }, (_, i) => s.charCodeAt(i))
  assert.equal(javaHashCode(units('')), 0)
  assert.equal(javaHashCode(units('hello')), 99162322)
  assert.equal(javaHashCode(units('polygenelubricants')), -2147483648)
})

test('memjs: abs(-2^31) is 2^31, and UTF-16 units are hashed', () => {
  // "polygenelubricants".hashCode() === Integer.MIN_VALUE: abs gives 2^31, 2^31 mod 3 = 2
  const p = placementFor('memjs', pool(3))
  assert.equal(p.owner(bytes('polygenelubricants')), 2 ** 31 % 3)
  // an astral character counts as two surrogate units
  const s = 'a😀'
  const units = Array.from({ length: s.length }, (_, i) => s.charCodeAt(i))
  assert.equal(p.owner(bytes(s)), Math.abs(javaHashCode(units)) % 3)
  // ill-formed UTF-8 decodes with U+FFFD, as Buffer#toString does
  const bad = new Uint8Array([0x61, 0xff, 0x62, 0xe4, 0xb8])
  const str = Buffer.from(bad).toString('utf8')
  const u2 = Array.from({ length: str.length }, (_, i) => str.charCodeAt(i))
  assert.equal(p.owner(bad), Math.abs(javaHashCode(u2)) % 3)
})

test('ketama points per server: float32 quirk', () => {
  assert.equal(ketamaPointsPerServer(1, 5, 5), 160)
  assert.equal(ketamaPointsPerServer(1, 25, 25), 156)
  assert.deepEqual(
    [1, 2, 3, 1, 5].map((w) => ketamaPointsPerServer(w, 12, 5)),
    [64, 132, 200, 64, 332],
  )
  const odd: number[] = []
  for (let n = 1; n <= 200; n++) if (ketamaPointsPerServer(1, n, n) !== 160) odd.push(n)
  assert.equal(odd.length, 19)
  assert.deepEqual(odd.slice(0, 8), [25, 47, 50, 55, 61, 71, 94, 100])
})

test('python bytes repr (pymemcache bytes keys)', () => {
  const repr = (b: Uint8Array): string => {
    const out = new Uint8Array(4 * b.length + 3)
    return Buffer.from(out.subarray(0, pythonBytesRepr(b, out, 0))).toString('latin1')
  }
  assert.equal(repr(bytes('abc')), "b'abc'")
  assert.equal(repr(bytes("it's")), `b"it's"`)
  assert.equal(repr(bytes(`it's "x"`)), `b'it\\'s "x"'`)
  assert.equal(repr(bytes('a"b')), `b'a"b'`)
  assert.equal(repr(bytes('back\\slash')), "b'back\\\\slash'")
  assert.equal(repr(new Uint8Array([9, 10, 13, 0, 0x1f, 0x7f, 0x80, 0xff, 0x20])), "b'\\t\\n\\r\\x00\\x1f\\x7f\\x80\\xff '")
  assert.equal(repr(bytes('é')), "b'\\xc3\\xa9'")
})

test('pecl memcache hashes the prepared key (bytes <= 0x20 as _, 250 bytes max)', () => {
  for (const h of ['php-memcache-standard-crc32', 'php-memcache-consistent-fnv'] as const) {
    const p = placementFor(h, pool(5))
    for (let i = 0; i < 50; i++) {
      assert.equal(p.owner(bytes(`a b\tc:${i}`)), p.owner(bytes(`a_b_c:${i}`)))
      const long = 'k'.repeat(250) + String(i)
      assert.equal(p.owner(bytes(long)), p.owner(bytes('k'.repeat(250))))
    }
  }
})

test('a server without ring points is never in a chain', () => {
  // hashring: floor(1/1001 × 40 × 2) = 0 vnodes for server 0
  const p = placementFor('node-memcached-hashring', pool(2, { weights: [1, 1000] }))
  for (const key of KEYS) {
    assert.equal(p.owner(key), 1)
    assert.deepEqual(p.chain(key, 2), [1])
  }
})
