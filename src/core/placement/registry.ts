/**
 * The placement strategies the CLI accepts (`--hash`, pool file `hash`), one per real client
 * configuration (vector file names with `_` → `-`), and the factory that builds them.
 */

import { hashringPlacement } from './hashring.js'
import { libmemcachedPlacement } from './libmemcached.js'
import { memjsPlacement } from './memjs.js'
import { peclConsistentPlacement, peclStandardPlacement } from './pecl-memcache.js'
import { pymemcachePlacement } from './pymemcache.js'
import { twemproxyPlacement } from './twemproxy.js'
import type { Placement, PlacementServer } from './types.js'

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
  'twemproxy-ketama-md5',
  'twemproxy-ketama-md5-named',
  'twemproxy-modula-fnv1a-64',
  'twemproxy-modula-fnv1a-64-named',
  'node-memcached-hashring',
] as const

export type HashName = (typeof HASH_NAMES)[number]

const NAME_SET: ReadonlySet<string> = new Set(HASH_NAMES)

export function isHashName(s: string): s is HashName {
  return NAME_SET.has(s)
}

export interface HashInfo {
  /** The client (and version) whose placement this reproduces. */
  readonly client: string
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

const PECL = 'PHP Memcache (pecl memcache 4.0.5.2)'
const PHPMD = 'php-memcached 3.x (libmemcached)'
const PYLIBMC = 'pylibmc 1.6 (libmemcached)'
const PYMC = 'pymemcache 3.5/4.0 HashClient'
const TWEM = 'twemproxy (nutcracker) 0.5'

export const HASH_INFO: Readonly<Record<HashName, HashInfo>> = {
  memjs: {
    client: 'memjs 1.3 (Node.js)',
    configuration: 'default getServer',
    algorithm: 'Java String.hashCode over UTF-16 units, abs, mod n (server order only)',
    weights: false,
    kind: 'modulo',
    usesNames: false,
  },
  'php-memcache-standard-crc32': {
    client: PECL,
    configuration: 'memcache.hash_strategy=standard, memcache.hash_function=crc32',
    algorithm: '((crc32 >> 16) & 0x7fff, 0 → 1) mod Σw over a bucket list (server repeated weight times)',
    weights: true,
    kind: 'modulo',
    usesNames: false,
  },
  'php-memcache-consistent-crc32': {
    client: PECL,
    configuration: 'memcache.hash_strategy=consistent, memcache.hash_function=crc32 (the defaults)',
    algorithm: 'ring of 160×weight crc32 points per server ("host:port-i"), key → 1024 buckets by crc32 mod 1024',
    weights: true,
    kind: 'consistent',
    usesNames: false,
  },
  'php-memcache-standard-fnv': {
    client: PECL,
    configuration: 'memcache.hash_strategy=standard, memcache.hash_function=fnv',
    algorithm: '((fnv1a32 >> 16) & 0x7fff, 0 → 1) mod Σw over a bucket list (server repeated weight times)',
    weights: true,
    kind: 'modulo',
    usesNames: false,
  },
  'php-memcache-consistent-fnv': {
    client: PECL,
    configuration: 'memcache.hash_strategy=consistent, memcache.hash_function=fnv',
    algorithm: 'ring of 160×weight fnv1a32 points per server ("host:port-i"), key → 1024 buckets by fnv1a32 mod 1024',
    weights: true,
    kind: 'consistent',
    usesNames: false,
  },
  'php-memcached-default': {
    client: PHPMD,
    configuration: 'no options (DISTRIBUTION_MODULA, HASH_DEFAULT)',
    algorithm: 'one_at_a_time (signed bytes) mod n',
    weights: false,
    kind: 'modulo',
    usesNames: false,
  },
  'php-memcached-libketama': {
    client: PHPMD,
    configuration: 'Memcached::OPT_LIBKETAMA_COMPATIBLE=true',
    algorithm: 'weighted ketama md5 ring (160 points per server at equal weights), key md5',
    weights: true,
    kind: 'consistent',
    usesNames: false,
  },
  'php-memcached-consistent': {
    client: PHPMD,
    configuration: 'Memcached::OPT_DISTRIBUTION=Memcached::DISTRIBUTION_CONSISTENT',
    algorithm: 'ring of 100 one_at_a_time points per server, key one_at_a_time; weighted md5 ring if any weight > 1',
    weights: true,
    kind: 'consistent',
    usesNames: false,
  },
  'pylibmc-default': {
    client: PYLIBMC,
    configuration: 'no behaviors',
    algorithm: 'one_at_a_time (signed bytes) mod n',
    weights: false,
    kind: 'modulo',
    usesNames: false,
  },
  'pylibmc-ketama': {
    client: PYLIBMC,
    configuration: 'behaviors={"ketama": True}',
    algorithm: 'ring of 100 one_at_a_time points per server, key one_at_a_time; weighted md5 ring if any weight > 1',
    weights: true,
    kind: 'consistent',
    usesNames: false,
  },
  'pylibmc-ketama-hash-md5': {
    client: PYLIBMC,
    configuration: 'behaviors={"ketama": True, "hash": "md5"}',
    algorithm: 'ring of 100 md5 points per server, key md5; weighted md5 ring if any weight > 1',
    weights: true,
    kind: 'consistent',
    usesNames: false,
  },
  'pylibmc-ketama-weighted': {
    client: PYLIBMC,
    configuration: 'behaviors={"ketama_weighted": True}',
    algorithm: 'weighted ketama md5 ring (160 points per server at equal weights), key md5',
    weights: true,
    kind: 'consistent',
    usesNames: false,
  },
  'pymemcache-rendezvous': {
    client: PYMC,
    configuration: 'default RendezvousHash, str keys',
    algorithm: 'rendezvous: highest murmur3_32("host:port-" + key) wins',
    weights: false,
    kind: 'consistent',
    usesNames: false,
  },
  'pymemcache-rendezvous-byteskeys': {
    client: PYMC,
    configuration: "default RendezvousHash, bytes keys (hashes the repr b'...')",
    algorithm: "rendezvous: highest murmur3_32(\"host:port-b'key'\") wins",
    weights: false,
    kind: 'consistent',
    usesNames: false,
  },
  'twemproxy-ketama-md5': {
    client: TWEM,
    configuration: 'distribution: ketama, hash: md5, servers host:port:weight',
    algorithm: 'weighted ketama md5 ring over "host:port" ("host" on port 11211), key md5',
    weights: true,
    kind: 'consistent',
    usesNames: false,
  },
  'twemproxy-ketama-md5-named': {
    client: TWEM,
    configuration: 'distribution: ketama, hash: md5, servers host:port:weight name',
    algorithm: 'weighted ketama md5 ring over the server names, key md5',
    weights: true,
    kind: 'consistent',
    usesNames: true,
  },
  'twemproxy-modula-fnv1a-64': {
    client: TWEM,
    configuration: 'distribution: modula, hash: fnv1a_64, servers host:port:weight',
    algorithm: 'fnv1a_64 (low 32 bits, signed bytes) mod Σw over servers sorted by "host:port", repeated weight times',
    weights: true,
    kind: 'modulo',
    usesNames: false,
  },
  'twemproxy-modula-fnv1a-64-named': {
    client: TWEM,
    configuration: 'distribution: modula, hash: fnv1a_64, servers host:port:weight name',
    algorithm: 'fnv1a_64 (low 32 bits, signed bytes) mod Σw over servers sorted by name, repeated weight times',
    weights: true,
    kind: 'modulo',
    usesNames: true,
  },
  'node-memcached-hashring': {
    client: 'memcached 2.2 (npm, 3rd-eden) + hashring 3.2',
    configuration: 'default (new Memcached([...]) or {"host:port": weight})',
    algorithm: 'hashring md5 ring, floor(w/W×40×n) vnodes × 4 points, key md5',
    weights: true,
    kind: 'consistent',
    usesNames: false,
  },
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
    case 'twemproxy-ketama-md5':
      return twemproxyPlacement(servers, { strategy: hash, distribution: 'ketama', named: false })
    case 'twemproxy-ketama-md5-named':
      return twemproxyPlacement(servers, { strategy: hash, distribution: 'ketama', named: true })
    case 'twemproxy-modula-fnv1a-64':
      return twemproxyPlacement(servers, { strategy: hash, distribution: 'modula', named: false })
    case 'twemproxy-modula-fnv1a-64-named':
      return twemproxyPlacement(servers, { strategy: hash, distribution: 'modula', named: true })
    case 'node-memcached-hashring':
      return hashringPlacement(servers)
    default: {
      const unknown: never = hash
      throw new Error(`placement: unknown strategy ${String(unknown)}; expected one of ${HASH_NAMES.join(', ')}`)
    }
  }
}

/** Whether removing or adding a server changes the owner of keys on the other servers too. */
export function isModulo(hash: HashName): boolean {
  return HASH_INFO[hash].kind === 'modulo'
}
