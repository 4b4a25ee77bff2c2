import { fractionalWeights, type HashName } from './registry.js'

/**
 * How large server weights may be, per strategy: every strategy must place a pool in
 * milliseconds, and weights past a client's own limit mean nothing to it.
 *
 * - Every weight is at most 2^31 − 1: the C clients (libmemcached, twemproxy, pecl memcache)
 *   keep weights in an int/uint32.
 * - Rings that scale points by weight / total weight (libmemcached and twemproxy ketama,
 *   node-memcached hashring) cost the same at any weight: no other limit.
 * - Bucket lists (pecl memcache standard, twemproxy modula) hold one slot per unit of weight:
 *   Σ weight ≤ 1,000,000 (25–140 ms to build here). pecl standard takes the bucket from 15
 *   bits of the hash, so slots past 32,767 are never used by the real client either.
 * - pecl memcache consistent puts 160 × weight points on its ring: Σ weight ≤ 1,000
 *   (160,000 points, 150–480 ms to build here on a shared machine).
 *
 * Measured with `node --import tsx scripts/weight-limits.ts` (see README, "Weights").
 */
export const MAX_WEIGHT = 2 ** 31 - 1

const MAX_TOTAL_WEIGHT: Partial<Record<HashName, number>> = {
  'php-memcache-standard-crc32': 1_000_000,
  'php-memcache-standard-fnv': 1_000_000,
  // python-memcached's bucket list is pecl memcache standard's.
  'python-memcached': 1_000_000,
  'php-memcache-consistent-crc32': 1_000,
  'php-memcache-consistent-fnv': 1_000,
}

export interface WeightLimit {
  /** Largest weight of one server. */
  perServer: number
  /** Largest sum of the weights of the servers placed (undefined: no limit past perServer × servers). */
  total?: number
}

export function weightLimit(hash: HashName): WeightLimit {
  // mcrouter's WeightedCh3 takes mcrouter's own weights: fractions from 0 to 1.
  if (fractionalWeights(hash)) return { perServer: 1 }
  // twemproxy modula, whatever its key hash: one bucket per unit of weight.
  const total = MAX_TOTAL_WEIGHT[hash] ?? (hash.startsWith('twemproxy-modula-') ? 1_000_000 : undefined)
  return total === undefined ? { perServer: MAX_WEIGHT } : { perServer: Math.min(MAX_WEIGHT, total), total }
}
