/**
 * The placement strategies the CLI accepts (`--hash`, pool file `hash`), one per real client
 * configuration (vector file names with `_` → `-`), and the factory that builds them.
 */

import { hashringPlacement } from './hashring.js'
import { libmemcachedPlacement } from './libmemcached.js'
import { memjsPlacement } from './memjs.js'
import { peclConsistentPlacement, peclStandardPlacement } from './pecl-memcache.js'
import { pymemcachePlacement } from './pymemcache.js'
import { dalliPlacement } from './dalli.js'
import { gomemcachePlacement } from './gomemcache.js'
import { TWEMPROXY_HASHES, type TwemproxyHash } from './hashkit.js'
import { mcrouterPlacement } from './mcrouter.js'
import { spymemcachedNativePlacement, spymemcachedRingPlacement, spymemcachedServerField } from './spymemcached.js'
import { twemproxyPlacement } from './twemproxy.js'
export { refusedHash, unsupportedMatches, UNSUPPORTED_CLIENTS, type UnsupportedClient } from './unsupported.js'
import type { Placement, PlacementServer } from './types.js'

/** The twemproxy strategy name of a `hash:` value: `_` → `-`. */
type Dashed<H extends string> = H extends `${infer A}_${infer B}` ? `${A}-${Dashed<B>}` : H
export type TwemproxyStrategy = `twemproxy-${TwemproxyDistribution}-${Dashed<TwemproxyHash>}${'' | '-named'}`
type TwemproxyDistribution = 'ketama' | 'modula'

/** All 48 twemproxy strategies: every `hash:` × {ketama, modula} × {host:port, named}. */
const TWEMPROXY_NAMES = (['ketama', 'modula'] as const).flatMap((dist) =>
  TWEMPROXY_HASHES.flatMap((hash) =>
    (['', '-named'] as const).map((named) => `twemproxy-${dist}-${hash.replaceAll('_', '-')}${named}` as TwemproxyStrategy),
  ),
)

interface TwemproxyConfig {
  readonly distribution: TwemproxyDistribution
  readonly hash: TwemproxyHash
  readonly named: boolean
}

const TWEMPROXY_CONFIG: ReadonlyMap<string, TwemproxyConfig> = new Map(
  (['ketama', 'modula'] as const).flatMap((distribution) =>
    TWEMPROXY_HASHES.flatMap((hash) =>
      [false, true].map((named) => [`twemproxy-${distribution}-${hash.replaceAll('_', '-')}${named ? '-named' : ''}`, { distribution, hash, named }] as const),
    ),
  ),
)

export const HASH_NAMES = [
  'memjs',
  'php-memcache-standard-crc32',
  'php-memcache-consistent-crc32',
  'php-memcache-standard-fnv',
  'php-memcache-consistent-fnv',
  'php-memcached-default',
  'php-memcached-libketama',
  'php-memcached-consistent',
  'pylibmc-default',
  'pylibmc-ketama',
  'pylibmc-ketama-hash-md5',
  'pylibmc-ketama-weighted',
  'pymemcache-rendezvous',
  'pymemcache-rendezvous-byteskeys',
  'python-memcached',
  'node-memcached-hashring',
  'ruby-dalli',
  'go-gomemcache',
  'spymemcached-native',
  'spymemcached-ketama',
  'spymemcached-ketama-libmemcached',
  'spymemcached-ketama-weighted',
  'spymemcached-consistent-native',
  'mcrouter-ch3',
  'mcrouter-crc32',
  'mcrouter-weighted-ch3',
  ...TWEMPROXY_NAMES,
] as const

export type HashName = (typeof HASH_NAMES)[number]

const NAME_SET: ReadonlySet<string> = new Set(HASH_NAMES)

export function isHashName(s: string): s is HashName {
  return NAME_SET.has(s)
}

export interface HashInfo {
  /** The client (or proxy) whose placement this reproduces. */
  readonly client: string
  /** The version(s) of that client the golden vectors were observed with. */
  readonly version: string
  /** The configuration of that client that selects it. */
  readonly configuration: string
  /** The algorithm, in a line. */
  readonly algorithm: string
  /** Whether server weights change placement. */
  readonly weights: boolean
  /** Whether every server needs a (twemproxy) name. */
  readonly usesNames: boolean
  /**
   * `consistent`: removing a server changes the owner of that server's keys only (rings,
   * rendezvous). `modulo`: the owner is a hash modulo the server count (or total weight), so
   * removing or adding one server changes the owner of keys on every server.
   */
  readonly kind: PlacementKind
}

export type PlacementKind = 'consistent' | 'modulo'

const PECL = { client: 'PHP Memcache (pecl memcache)', version: '4.0.5.2' }
const PHPMD = { client: 'PHP Memcached (php-memcached, libmemcached)', version: '3.2.0 / libmemcached 1.1.4' }
const PYLIBMC = { client: 'pylibmc (Python, libmemcached)', version: '1.6.3 / libmemcached 1.1.4' }
const PYMC = { client: 'pymemcache HashClient (Python)', version: '3.5.2 (same rule in 4.0)' }
const SPY = { client: 'spymemcached (Java)', version: '2.12.3' }
const MCROUTER = { client: 'mcrouter', version: 'git 9d7f434 (2026-08)' }
const TWEM = { client: 'twemproxy (nutcracker)', version: '0.5.0' }

/** Each twemproxy `hash:` value in a line, for `memdrain hashes`. */
const TWEMPROXY_HASH_TEXT: Readonly<Record<TwemproxyHash, string>> = {
  one_at_a_time: 'Jenkins one-at-a-time (signed bytes)',
  md5: 'md5word(key, 0)',
  crc16: 'CRC-16/XMODEM step on an unmasked u32 (32 bits of history)',
  crc32: '(crc32 >> 16) & 0x7fff (15 bits)',
  crc32a: 'full crc32',
  fnv1_64: 'FNV-1 64, low 32 bits (signed bytes)',
  fnv1a_64: 'FNV-1a 64, low 32 bits (signed bytes)',
  fnv1_32: 'FNV-1 32 (signed bytes)',
  fnv1a_32: 'FNV-1a 32 (signed bytes)',
  hsieh: 'SuperFastHash starting at 0',
  murmur: 'MurmurHash2, seed 0xdeadbeef × len',
  jenkins: 'lookup3 hashlittle, initval 13',
}

function twemproxyInfo(c: TwemproxyConfig): HashInfo {
  const isDefault = c.distribution === 'ketama' && c.hash === 'fnv1a_64'
  const servers = c.named ? 'servers host:port:weight name' : 'servers host:port:weight (no names)'
  const ids = c.named ? 'the server names' : '"host:port" ("host" on port 11211)'
  const note = c.distribution === 'ketama' && c.hash === 'crc32' ? '; every key lands on one server (a 15-bit hash on a 32-bit ring), as in the proxy' : ''
  return {
    ...TWEM,
    configuration: `distribution: ${c.distribution}, hash: ${c.hash}, ${servers}${isDefault ? ' (twemproxy\'s default: no hash:/distribution: lines)' : ''}`,
    algorithm:
      c.distribution === 'ketama'
        ? `weighted ketama md5 ring over ${ids}, key ${TWEMPROXY_HASH_TEXT[c.hash]}${note}`
        : `${TWEMPROXY_HASH_TEXT[c.hash]} mod Σw over the servers sorted by ${c.named ? 'name' : 'host[:port]'}, each repeated weight times`,
    weights: true,
    kind: c.distribution === 'ketama' ? 'consistent' : 'modulo',
    usesNames: c.named,
  }
}

const FIXED_INFO: Readonly<Record<Exclude<HashName, TwemproxyStrategy>, HashInfo>> = {
  memjs: {
    client: 'memjs (Node.js)',
    version: '1.3.2',
    configuration: 'default getServer',
    algorithm: 'Java String.hashCode over UTF-16 units, abs, mod n (server order only)',
    weights: false,
    kind: 'modulo',
    usesNames: false,
  },
  'php-memcache-standard-crc32': {
    ...PECL,
    configuration: 'memcache.hash_strategy=standard, memcache.hash_function=crc32',
    algorithm: '((crc32 >> 16) & 0x7fff, 0 → 1) mod Σw over a bucket list (server repeated weight times)',
    weights: true,
    kind: 'modulo',
    usesNames: false,
  },
  'php-memcache-consistent-crc32': {
    ...PECL,
    configuration: 'memcache.hash_strategy=consistent, memcache.hash_function=crc32 (the defaults)',
    algorithm: 'ring of 160×weight crc32 points per server ("host:port-i"), key → 1024 buckets by crc32 mod 1024',
    weights: true,
    kind: 'consistent',
    usesNames: false,
  },
  'php-memcache-standard-fnv': {
    ...PECL,
    configuration: 'memcache.hash_strategy=standard, memcache.hash_function=fnv',
    algorithm: '((fnv1a32 >> 16) & 0x7fff, 0 → 1) mod Σw over a bucket list (server repeated weight times)',
    weights: true,
    kind: 'modulo',
    usesNames: false,
  },
  'php-memcache-consistent-fnv': {
    ...PECL,
    configuration: 'memcache.hash_strategy=consistent, memcache.hash_function=fnv',
    algorithm: 'ring of 160×weight fnv1a32 points per server ("host:port-i"), key → 1024 buckets by fnv1a32 mod 1024',
    weights: true,
    kind: 'consistent',
    usesNames: false,
  },
  'php-memcached-default': {
    ...PHPMD,
    configuration: 'no options (DISTRIBUTION_MODULA, HASH_DEFAULT)',
    algorithm: 'one_at_a_time (signed bytes) mod n',
    weights: false,
    kind: 'modulo',
    usesNames: false,
  },
  'php-memcached-libketama': {
    ...PHPMD,
    configuration: 'Memcached::OPT_LIBKETAMA_COMPATIBLE=true',
    algorithm: 'weighted ketama md5 ring (160 points per server at equal weights), key md5',
    weights: true,
    kind: 'consistent',
    usesNames: false,
  },
  'php-memcached-consistent': {
    ...PHPMD,
    configuration: 'Memcached::OPT_DISTRIBUTION=Memcached::DISTRIBUTION_CONSISTENT',
    algorithm: 'ring of 100 one_at_a_time points per server, key one_at_a_time; weighted md5 ring if any weight > 1',
    weights: true,
    kind: 'consistent',
    usesNames: false,
  },
  'pylibmc-default': {
    ...PYLIBMC,
    configuration: 'no behaviors',
    algorithm: 'one_at_a_time (signed bytes) mod n',
    weights: false,
    kind: 'modulo',
    usesNames: false,
  },
  'pylibmc-ketama': {
    ...PYLIBMC,
    configuration: 'behaviors={"ketama": True}',
    algorithm: 'ring of 100 one_at_a_time points per server, key one_at_a_time; weighted md5 ring if any weight > 1',
    weights: true,
    kind: 'consistent',
    usesNames: false,
  },
  'pylibmc-ketama-hash-md5': {
    ...PYLIBMC,
    configuration: 'behaviors={"ketama": True, "hash": "md5"}',
    algorithm: 'ring of 100 md5 points per server, key md5; weighted md5 ring if any weight > 1',
    weights: true,
    kind: 'consistent',
    usesNames: false,
  },
  'pylibmc-ketama-weighted': {
    ...PYLIBMC,
    configuration: 'behaviors={"ketama_weighted": True}',
    algorithm: 'weighted ketama md5 ring (160 points per server at equal weights), key md5',
    weights: true,
    kind: 'consistent',
    usesNames: false,
  },
  'pymemcache-rendezvous': {
    ...PYMC,
    configuration: 'default RendezvousHash, str keys',
    algorithm: 'rendezvous: highest murmur3_32("host:port-" + key) wins',
    weights: false,
    kind: 'consistent',
    usesNames: false,
  },
  'pymemcache-rendezvous-byteskeys': {
    ...PYMC,
    configuration: "default RendezvousHash, bytes keys (hashes the repr b'...')",
    algorithm: "rendezvous: highest murmur3_32(\"host:port-b'key'\") wins",
    weights: false,
    kind: 'consistent',
    usesNames: false,
  },
  'python-memcached': {
    client: 'python-memcached (Django MemcachedCache)',
    version: '1.59 (module says 1.58)',
    configuration: 'memcache.Client([...]) or [("host:port", weight)], default cmemcache_hash',
    algorithm: '((crc32 >> 16) & 0x7fff, 0 → 1) mod Σw over a bucket list (same as php-memcache-standard-crc32)',
    weights: true,
    kind: 'modulo',
    usesNames: false,
  },
  'node-memcached-hashring': {
    client: 'memcached (npm, 3rd-eden) + hashring',
    version: '2.2.2 + hashring 3.2.0',
    configuration: 'default (new Memcached([...]) or {"host:port": weight})',
    algorithm: 'hashring md5 ring, floor(w/W×40×n) vnodes × 4 points, key md5',
    weights: true,
    kind: 'consistent',
    usesNames: false,
  },
  'ruby-dalli': {
    client: 'Dalli (Ruby, Rails\' :mem_cache_store)',
    version: '3.0.6',
    configuration: 'Dalli::Client.new(["host:port[:weight]", ...]), defaults (namespace and long keys: the stored key is hashed)',
    algorithm: 'ring of floor(n×160×w/W) SHA1("host:port:i") points, key crc32, LAST point <= hash (wrapping to the largest)',
    weights: true,
    kind: 'consistent',
    usesNames: false,
  },
  'go-gomemcache': {
    client: 'gomemcache (Go, bradfitz/gomemcache)',
    version: 'git 2014-11-09 (Debian); same PickServer upstream in 2025',
    configuration: 'memcache.New("host:port", ...) / ServerList',
    algorithm: 'crc32 (IEEE) mod n (server order only; a server listed twice counts twice)',
    weights: false,
    kind: 'modulo',
    usesNames: false,
  },
  'spymemcached-native': {
    ...SPY,
    configuration: 'new MemcachedClient(AddrUtil.getAddresses(...)): DefaultConnectionFactory, ArrayModNodeLocator + NATIVE_HASH',
    algorithm: 'Java String.hashCode as unsigned u32 mod n (server order only)',
    weights: false,
    kind: 'modulo',
    usesNames: false,
  },
  'spymemcached-ketama': {
    ...SPY,
    configuration: 'KetamaConnectionFactory (or builder CONSISTENT + KETAMA_HASH), key format SPYMEMCACHED',
    algorithm: '160 md5 points per server of "ip:port-i" / "name/ip:port-i" (host names need "resolved"), key md5',
    weights: false,
    kind: 'consistent',
    usesNames: false,
  },
  'spymemcached-ketama-libmemcached': {
    ...SPY,
    configuration: 'KetamaConnectionFactory(..., KETAMA_HASH, Format.LIBMEMCACHED, {})',
    algorithm: '160 md5 points per server of "getHostName()[:port]-i" (IP literals need "hostname", the reverse-DNS name), key md5',
    weights: false,
    kind: 'consistent',
    usesNames: false,
  },
  'spymemcached-ketama-weighted': {
    ...SPY,
    configuration: 'KetamaConnectionFactory(..., KETAMA_HASH, Format.SPYMEMCACHED, weights), a weight for every server',
    algorithm: 'weighted ketama md5 ring (float32 formula: 160 points, 156 at n = 25, ...) of the SPYMEMCACHED identities, key md5',
    weights: true,
    kind: 'consistent',
    usesNames: false,
  },
  'spymemcached-consistent-native': {
    ...SPY,
    configuration: 'ConnectionFactoryBuilder.setLocatorType(CONSISTENT) without setHashAlg (NATIVE_HASH)',
    algorithm: '160 String.hashCode points per server of the SPYMEMCACHED identity, key String.hashCode (very uneven: one server gets most keys)',
    weights: false,
    kind: 'consistent',
    usesNames: false,
  },
  'mcrouter-ch3': {
    ...MCROUTER,
    configuration: 'HashRoute / PoolRoute "hash_func": "Ch3" (the default)',
    algorithm: 'furc_hash (MurmurHash64A bit stream) of the routing key over the servers in order; only removing or adding the LAST server keeps the other keys',
    weights: false,
    kind: 'consistent',
    usesNames: false,
  },
  'mcrouter-crc32': {
    ...MCROUTER,
    configuration: '"hash_func": "Crc32"',
    algorithm: '(crc32(routing key) & 0x7fffffff) mod n',
    weights: false,
    kind: 'modulo',
    usesNames: false,
  },
  'mcrouter-weighted-ch3': {
    ...MCROUTER,
    configuration: '"hash_func": "WeightedCh3", "weights": [...] (pool-file weights are mcrouter\'s, from 0 to 1)',
    algorithm: 'furc_hash of the routing key, kept with probability weight (SpookyHashV2-32), else salted retries (32 tries)',
    weights: true,
    kind: 'consistent',
    usesNames: false,
  },
}

export const HASH_INFO: Readonly<Record<HashName, HashInfo>> = {
  ...FIXED_INFO,
  ...(Object.fromEntries([...TWEMPROXY_CONFIG].map(([name, c]) => [name, twemproxyInfo(c)])) as Record<TwemproxyStrategy, HashInfo>),
}

/** Strategies whose weights are mcrouter's fractions in [0, 1] rather than positive integers. */
export function fractionalWeights(hash: HashName): boolean {
  return hash === 'mcrouter-weighted-ch3'
}

/**
 * A per-server field `hash` needs for a server on `host` beyond its address (spymemcached rings
 * hash what the Java client resolved), with why; undefined when the address is enough.
 */
export function requiredServerField(hash: HashName, host: string): { field: 'hostname' | 'resolved'; why: string } | undefined {
  const field = spymemcachedServerField(hash, host)
  if (field === 'hostname') {
    return {
      field,
      why: 'spymemcached\'s LIBMEMCACHED key format hashes Java getHostName(), which for an IP literal is its reverse-DNS name in the application\'s JVM (e.g. "localhost" for 127.0.0.1 from /etc/hosts, or the IP itself when there is no PTR record)',
    }
  }
  if (field === 'resolved') {
    return {
      field,
      why: 'spymemcached\'s default key format hashes "name/ip:port": the IP address the application resolved this host name to when it started',
    }
  }
  return undefined
}

/**
 * Builds the placement of `hash` for `servers` (configuration order). Throws an Error for an
 * empty list, a non-positive or fractional weight, and, for the `*-named` strategies, a server
 * without a name (or two with the same name).
 */
export function placementFor(hash: HashName, servers: readonly PlacementServer[]): Placement {
  switch (hash) {
    case 'memjs':
      return memjsPlacement(servers)
    case 'php-memcache-standard-crc32':
      return peclStandardPlacement(servers, 'crc32')
    case 'php-memcache-standard-fnv':
      return peclStandardPlacement(servers, 'fnv')
    case 'php-memcache-consistent-crc32':
      return peclConsistentPlacement(servers, 'crc32')
    case 'php-memcache-consistent-fnv':
      return peclConsistentPlacement(servers, 'fnv')
    case 'php-memcached-default':
    case 'pylibmc-default':
      return libmemcachedPlacement(servers, { strategy: hash, distribution: 'modula', hash: 'one_at_a_time' })
    case 'php-memcached-libketama':
    case 'pylibmc-ketama-weighted':
      return libmemcachedPlacement(servers, { strategy: hash, distribution: 'ketama-weighted', hash: 'md5' })
    case 'php-memcached-consistent':
    case 'pylibmc-ketama':
      return libmemcachedPlacement(servers, { strategy: hash, distribution: 'consistent', hash: 'one_at_a_time' })
    case 'pylibmc-ketama-hash-md5':
      return libmemcachedPlacement(servers, { strategy: hash, distribution: 'consistent', hash: 'md5' })
    case 'pymemcache-rendezvous':
      return pymemcachePlacement(servers, 'str')
    case 'pymemcache-rendezvous-byteskeys':
      return pymemcachePlacement(servers, 'bytes')
    case 'node-memcached-hashring':
      return hashringPlacement(servers)
    case 'python-memcached':
      // python-memcached's cmemcache_hash and bucket list are pecl memcache standard + crc32 (SPEC-more-clients §4).
      return peclStandardPlacement(servers, 'crc32')
    case 'ruby-dalli':
      return dalliPlacement(servers)
    case 'go-gomemcache':
      return gomemcachePlacement(servers)
    case 'spymemcached-native':
      return spymemcachedNativePlacement(servers)
    case 'spymemcached-ketama':
      return spymemcachedRingPlacement(servers, 'ketama')
    case 'spymemcached-ketama-libmemcached':
      return spymemcachedRingPlacement(servers, 'ketama-libmemcached')
    case 'spymemcached-ketama-weighted':
      return spymemcachedRingPlacement(servers, 'ketama-weighted')
    case 'spymemcached-consistent-native':
      return spymemcachedRingPlacement(servers, 'consistent-native')
    case 'mcrouter-ch3':
      return mcrouterPlacement(servers, 'ch3')
    case 'mcrouter-crc32':
      return mcrouterPlacement(servers, 'crc32')
    case 'mcrouter-weighted-ch3':
      return mcrouterPlacement(servers, 'weighted-ch3')
    default: {
      const twem = TWEMPROXY_CONFIG.get(hash)
      if (twem !== undefined) return twemproxyPlacement(servers, { strategy: hash, ...twem })
      throw new Error(`placement: unknown strategy ${String(hash)}; expected one of ${HASH_NAMES.join(', ')}`)
    }
  }
}

/** Whether removing or adding a server changes the owner of keys on the other servers too. */
export function isModulo(hash: HashName): boolean {
  return HASH_INFO[hash].kind === 'modulo'
}
