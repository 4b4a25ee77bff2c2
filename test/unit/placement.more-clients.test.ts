/**
 * The parts of the newer strategies the golden vectors do not pin down by themselves: published
 * reference values of the hash functions, the routing-key and identity rules on inputs the
 * vectors lack (IPv6, host names), ties, refusals, and the pool-file fields these strategies need.
 */

import assert from 'node:assert/strict'
import { test } from 'node:test'

import { MemdrainError } from '../../src/core/errors.js'
import { Furc, murmurHash64A } from '../../src/core/placement/furc.js'
import { crc16Twemproxy, TWEMPROXY_HASH_FN } from '../../src/core/placement/hashkit.js'
import { placementFor, type PlacementServer } from '../../src/core/placement/index.js'
import { routingKeyEnd, routingKeyStart } from '../../src/core/placement/mcrouter.js'
import { refusedHash } from '../../src/core/placement/registry.js'
import { Ring } from '../../src/core/placement/ring.js'
import { javaIPv6, spymemcachedIdentity, spymemcachedLibmemcachedIdentity } from '../../src/core/placement/spymemcached.js'
import { spookyHash32 } from '../../src/core/placement/spooky.js'
import { findClient } from '../../src/core/placement/catalog.js'
import { poolToDocument } from '../../src/core/pool/model.js'
import { validatePool } from '../../src/core/pool/validate.js'

const enc = new TextEncoder()
const b = (s: string): Uint8Array => enc.encode(s)

function server(address: string, extra: Partial<PlacementServer> = {}): PlacementServer {
  const colon = address.lastIndexOf(':')
  const host = address.slice(0, colon).replace(/^\[|\]$/g, '')
  return { address, host, port: Number(address.slice(colon + 1)), weight: 1, ...extra }
}

test('mcrouter Ch3 reproduces mcrouter\'s own Ch3HashTest values', () => {
  const furc = new Furc()
  const ch3 = (key: string, n: number): number => furc.hash(b(key), 0, b(key).length, n)
  assert.equal(ch3('sample', 100), 97)
  assert.equal(ch3('', 100), 72)
  assert.equal(ch3('sample', 1 << 23), 5167780)
  assert.equal(ch3('anything', 1), 0)
})

test('MurmurHash64A and SpookyHashV2 agree with independent BigInt/long-form references', () => {
  // MurmurHash64A by BigInt, straight from the reference C.
  const M = 0xc6a4a7935bd1e995n
  const mask = (1n << 64n) - 1n
  const ref = (data: Uint8Array, seed: bigint): bigint => {
    let h = (seed ^ (BigInt(data.length) * M)) & mask
    let p = 0
    for (; p + 8 <= data.length; p += 8) {
      let k = 0n
      for (let j = 7; j >= 0; j--) k = (k << 8n) | BigInt(data[p + j]!)
      k = (k * M) & mask
      k ^= k >> 47n
      k = (k * M) & mask
      h ^= k
      h = (h * M) & mask
    }
    if (p < data.length) {
      for (let j = data.length - p - 1; j >= 0; j--) h ^= BigInt(data[p + j]!) << BigInt(8 * j)
      h = (h * M) & mask
    }
    h ^= h >> 47n
    h = (h * M) & mask
    h ^= h >> 47n
    return h
  }
  for (const key of ['', 'a', 'sample', 'exactly8', 'a key of twenty-three b', 'ключ', 'x'.repeat(250)]) {
    const [hi, lo] = murmurHash64A(b(key), 4193360111)
    assert.equal((BigInt(hi) << 32n) | BigInt(lo), ref(b(key), 4193360111n), key)
  }
  // SpookyHashV2 short and long forms give well-spread, deterministic values; the exact values
  // are pinned by the mcrouter-weighted-ch3 vectors (keys of 1..250 bytes, both forms).
  const seen = new Set<number>()
  for (let len = 0; len < 400; len++) {
    const v = spookyHash32(b('k'.repeat(len)), 0, len, 0xface2014)
    assert.ok(Number.isInteger(v) && v >= 0 && v <= 0xffffffff)
    seen.add(v)
  }
  assert.equal(seen.size, 400)
})

test('mcrouter routing key: /region/cluster/ prefix stripped, cut at the first |#|', () => {
  const cases: [string, string][] = [
    ['/r/c/user:1', 'user:1'],
    ['/a/b/c/d', 'c/d'],
    ['//x/y', 'y'],
    ['/r/c/k|#|x', 'k'],
    ['a|#|b|#|c', 'a'],
    ['/r/c/', ''],
    ['/a/b', '/a/b'],
    ['plain', 'plain'],
    ['a|#', 'a|#'],
  ]
  for (const [key, routing] of cases) {
    const k = b(key)
    const start = routingKeyStart(k)
    assert.equal(Buffer.from(k.subarray(start, routingKeyEnd(k, start))).toString(), routing, key)
  }
  // Placement uses it: a prefixed key goes where its routing key goes.
  const servers = ['10.0.0.1:11211', '10.0.0.2:11211', '10.0.0.3:11211', '10.0.0.4:11211', '10.0.0.5:11211'].map((a) => server(a))
  for (const hash of ['mcrouter-ch3', 'mcrouter-crc32'] as const) {
    const p = placementFor(hash, servers)
    for (let i = 0; i < 50; i++) assert.equal(p.owner(b(`/eu/main/user:${i}|#|v2`)), p.owner(b(`user:${i}`)))
  }
})

test('mcrouter-weighted-ch3: weight 1 everywhere is plain Ch3; weights must be in [0, 1]; all-zero still places', () => {
  const servers = [1, 2, 3, 4].map((i) => server(`10.0.0.${i}:11211`))
  const ch3 = placementFor('mcrouter-ch3', servers)
  const full = placementFor('mcrouter-weighted-ch3', servers)
  const zero = placementFor('mcrouter-weighted-ch3', servers.map((s) => ({ ...s, weight: 0 })))
  for (let i = 0; i < 200; i++) {
    assert.equal(full.owner(b(`k${i}`)), ch3.owner(b(`k${i}`)))
    const z = zero.owner(b(`k${i}`))
    assert.ok(z >= 0 && z < 4)
  }
  assert.throws(() => placementFor('mcrouter-weighted-ch3', servers.map((s) => ({ ...s, weight: 1.5 }))), /from 0 to 1/)
  assert.throws(() => placementFor('ruby-dalli', servers.map((s) => ({ ...s, weight: 0.5 }))), /positive integers/)
})

test('twemproxy crc16 keeps 32 bits of history; every hash of "" is defined', () => {
  assert.equal(crc16Twemproxy(b('apple')), 0xda525bb4)
  for (const [name, fn] of Object.entries(TWEMPROXY_HASH_FN)) {
    const v = fn(b('apple'))
    assert.ok(Number.isInteger(v) && v >= 0 && v <= 0xffffffff, name)
  }
  assert.equal(TWEMPROXY_HASH_FN.crc32(b('apple')) < 0x8000, true)
})

test('twemproxy crc32 + ketama sends every key to one server, as the proxy does', () => {
  const servers = [1, 2, 3, 4, 5].map((i) => server(`10.0.0.${i}:11211`))
  const p = placementFor('twemproxy-ketama-crc32', servers)
  const owners = new Set(Array.from({ length: 500 }, (_, i) => p.owner(b(`key:${i}`))))
  assert.equal(owners.size, 1)
})

test('twemproxy random is refused with the reason; other names are not', () => {
  for (const name of ['twemproxy-random', 'twemproxy-random-md5', 'twemproxy_random_fnv1a_64-named']) {
    const r = refusedHash(name)
    assert.ok(r !== undefined, name)
    assert.match(r.reason, /srandom/)
  }
  assert.equal(refusedHash('twemproxy-ketama-md5'), undefined)
  assert.throws(
    () => validatePool({ hash: 'twemproxy-random-md5', servers: ['10.0.0.1:11211'] }, 'p.json'),
    (e: unknown) => e instanceof MemdrainError && /cannot be reproduced/.test(e.message),
  )
})

test('Dalli: last point <= hash, wrapping to the largest; one server takes everything', () => {
  const ring = Ring.build([100, 200, 300], [0, 1, 2])
  assert.equal(ring.lookupFloor(50), 2, 'below every point: the largest')
  assert.equal(ring.lookupFloor(100), 0)
  assert.equal(ring.lookupFloor(250), 1)
  assert.equal(ring.lookupFloor(0xffffffff), 2)
  const one = placementFor('ruby-dalli', [server('cache:11211')])
  assert.equal(one.owner(b('anything')), 0)
})

test('a TreeMap ring keeps the later server of equal points (spymemcached)', () => {
  const ring = Ring.build([5, 5, 9], [0, 1, 2], 'last')
  assert.deepEqual([...ring.points], [5, 9])
  assert.deepEqual([...ring.owners], [1, 2])
})

test('spymemcached identities: ip:port, name/ip:port, IPv6 expanded, getHostName() with 11211 left out', () => {
  assert.equal(javaIPv6('::1'), '0:0:0:0:0:0:0:1')
  assert.equal(javaIPv6('2001:db8::ff00:42:8329'), '2001:db8:0:0:0:ff00:42:8329')
  assert.equal(javaIPv6('::ffff:10.0.0.1'), '0:0:0:0:0:ffff:a00:1')
  const s = 'spymemcached-ketama'
  assert.equal(spymemcachedIdentity(s, server('127.0.0.1:11211'), 0), '127.0.0.1:11211')
  assert.equal(spymemcachedIdentity(s, server('[::1]:11211'), 0), '[0:0:0:0:0:0:0:1]:11211')
  assert.equal(spymemcachedIdentity(s, server('[::ffff:10.0.0.1]:11211'), 0), '10.0.0.1:11211')
  assert.equal(spymemcachedIdentity(s, server('cache-a.internal:11211', { resolved: '10.0.0.5' }), 0), 'cache-a.internal/10.0.0.5:11211')
  assert.throws(() => spymemcachedIdentity(s, server('cache-a.internal:11211'), 0), /resolved/)
  const l = 'spymemcached-ketama-libmemcached'
  assert.equal(spymemcachedLibmemcachedIdentity(l, server('127.0.0.1:24211', { hostname: 'localhost' }), 0), 'localhost:24211')
  assert.equal(spymemcachedLibmemcachedIdentity(l, server('127.0.0.2:11211', { hostname: '127.0.0.2' }), 0), '127.0.0.2')
  assert.equal(spymemcachedLibmemcachedIdentity(l, server('cache-a.internal:11211'), 0), 'cache-a.internal')
  assert.throws(() => spymemcachedLibmemcachedIdentity(l, server('127.0.0.1:11211'), 0), /hostname/)
  // With host names and 160 points, the LIBMEMCACHED format is php-memcached's libketama ring.
  const names = ['cache-a.internal:11211', 'cache-b.internal:11211', 'cache-c.internal:11212'].map((a) => server(a))
  const spy = placementFor(l, names)
  const php = placementFor('php-memcached-libketama', names)
  for (let i = 0; i < 300; i++) assert.equal(spy.owner(b(`k:${i}`)), php.owner(b(`k:${i}`)))
})

test('pool file: mcrouter weights are required fractions and survive a rewrite; hostname and resolved are kept', () => {
  const doc = {
    hash: 'mcrouter-weighted-ch3',
    servers: [
      { address: '10.0.0.1:11211', weight: 1 },
      { address: '10.0.0.2:11211', weight: 0.25 },
    ],
  }
  const pool = validatePool(doc, 'p.json')
  assert.deepEqual(
    pool.servers.map((s) => s.weight),
    [1, 0.25],
  )
  const again = validatePool(poolToDocument(pool), 'p.json')
  assert.deepEqual(
    again.servers.map((s) => s.weight),
    [1, 0.25],
  )
  const bad = (d: unknown, field: RegExp): void => {
    assert.throws(
      () => validatePool(d, 'p.json'),
      (e: unknown) => e instanceof MemdrainError && field.test(e.message),
    )
  }
  bad({ ...doc, servers: [{ address: '10.0.0.1:11211' }] }, /servers\[0\]\.weight: is required by mcrouter-weighted-ch3/)
  bad({ ...doc, servers: [{ address: '10.0.0.1:11211', weight: 2 }] }, /servers\[0\]\.weight: must be a number from 0 to 1/)
  bad({ hash: 'memjs', servers: [{ address: '10.0.0.1:11211', weight: 0.5 }] }, /servers\[0\]\.weight: must be a whole number/)

  bad({ hash: 'spymemcached-ketama-libmemcached', servers: ['127.0.0.1:11211'] }, /servers\[0\]\.hostname: is required/)
  bad({ hash: 'spymemcached-ketama', servers: ['cache-a.internal:11211'] }, /servers\[0\]\.resolved: is required/)
  bad({ hash: 'spymemcached-ketama', servers: [{ address: 'cache-a.internal:11211', resolved: 'not-an-ip' }] }, /resolved: must be an IP address/)
  const spy = validatePool(
    {
      hash: 'spymemcached-ketama',
      servers: [
        { address: 'cache-a.internal:11211', resolved: '10.0.0.5' },
        { address: '127.0.0.1:11211', hostname: 'localhost' },
      ],
    },
    'p.json',
  )
  const written = poolToDocument(spy).servers as Record<string, unknown>[]
  assert.equal(written[0]!.resolved, '10.0.0.5')
  assert.equal(written[1]!.hostname, 'localhost')
  assert.deepEqual(validatePool(poolToDocument(spy), 'p.json').servers, spy.servers)
  // Names of twemproxy strategies with `_` get a "did you mean".
  assert.throws(
    () => validatePool({ hash: 'twemproxy_ketama_fnv1a_64', servers: ['10.0.0.1:11211'] }, 'p.json'),
    (e: unknown) => e instanceof MemdrainError && e.suggestions.some((s) => s.includes('twemproxy-ketama-fnv1a-64')),
  )
})

test('hashes --client matching: names, client words, and the not-supported list', () => {
  assert.deepEqual(
    findClient('Ruby').strategies.map((s) => s.name),
    ['ruby-dalli'],
  )
  assert.deepEqual(
    findClient('django').strategies.map((s) => s.name),
    ['python-memcached'],
  )
  assert.equal(findClient('spymemcached').strategies.length, 5)
  assert.equal(findClient('nutcracker').strategies.length, 48)
  assert.equal(findClient('twemproxy fnv1a_64').strategies.length, 4)
  assert.equal(findClient('xmemcached').strategies.length, 0)
  assert.equal(findClient('xmemcached').unsupported.length, 1)
  assert.ok(findClient('mcrouter').unsupported.length > 0)
})
