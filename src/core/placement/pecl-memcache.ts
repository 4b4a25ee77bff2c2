/**
 * pecl memcache 4.0.5.2, the PHP `Memcache` class (SPEC §2).
 *
 * Hashed key: bytes <= 0x20 replaced by `_`, truncated to 250 bytes. H = crc32, or FNV-1a 32
 * with signed bytes (`memcache.hash_function=fnv`). One server: everything goes to it.
 *
 * standard: bucket list with server i repeated weight(i) times; v = (H >> 16) & 0x7FFF, 0 → 1;
 *   owner = buckets[v mod len]. chain: the owner, then the next distinct servers of the bucket
 *   list after that bucket, wrapping.
 * consistent (the default): 160 × weight points per server, H(`host:port-i`) (port always
 *   written); bucket b of 1024 = the ring point found by a lookup of b × 4194303; owner = the
 *   server of point bucket[H(key) mod 1024]. chain: walk the ring clockwise from that point.
 */

import { checkServers } from './common.js'
import { crc32, fnv1a32Signed } from './hashes.js'
import { Ring, RingBuilder, RingPlacement } from './ring.js'
import { SlotPlacement, weightedSlots } from './slots.js'
import { utf8 } from './text.js'
import type { Placement, PlacementServer } from './types.js'

export type PeclHash = 'crc32' | 'fnv'

const MAX_KEY = 250
const POINTS_PER_WEIGHT = 160
const BUCKETS = 1024
const BUCKET_STEP = Math.floor(0xffffffff / BUCKETS) // 4194303

type ByteHash = (data: Uint8Array, start?: number, end?: number) => number

function hashFn(hash: PeclHash): ByteHash {
  return hash === 'crc32' ? crc32 : fnv1a32Signed
}

/** H(prepared key): the key with bytes <= 0x20 as `_`, cut at 250 bytes, hashed without allocating. */
function keyHasher(hash: PeclHash): (key: Uint8Array) => number {
  const h = hashFn(hash)
  const scratch = new Uint8Array(MAX_KEY)
  return (key) => {
    const len = key.length < MAX_KEY ? key.length : MAX_KEY
    let clean = len === key.length
    for (let i = 0; i < len; i++) {
      if (key[i]! <= 0x20) {
        clean = false
        break
      }
    }
    if (clean) return h(key, 0, len)
    for (let i = 0; i < len; i++) {
      const b = key[i]!
      scratch[i] = b <= 0x20 ? 0x5f : b
    }
    return h(scratch, 0, len)
  }
}

export function peclStandardPlacement(servers: readonly PlacementServer[], hash: PeclHash): Placement {
  const list = checkServers(`php-memcache-standard-${hash}`, servers)
  const order = list.map((_, i) => i)
  const buckets = weightedSlots(list, order)
  const len = buckets.length
  const h = keyHasher(hash)
  return new SlotPlacement(list, buckets, (key) => {
    const v = (h(key) >>> 16) & 0x7fff
    return (v === 0 ? 1 : v) % len
  })
}

/** The pecl consistent ring: 160 × weight points per server, point i = H(`host:port-i`). */
export function peclConsistentRing(servers: readonly PlacementServer[], hash: PeclHash): Ring {
  const h = hashFn(hash)
  const b = new RingBuilder()
  servers.forEach((s, idx) => {
    const points = POINTS_PER_WEIGHT * s.weight
    for (let i = 0; i < points; i++) b.add(h(utf8(`${s.host}:${s.port}-${i}`)), idx)
  })
  return b.build()
}

export function peclConsistentPlacement(servers: readonly PlacementServer[], hash: PeclHash): Placement {
  const list = checkServers(`php-memcache-consistent-${hash}`, servers)
  const ring = peclConsistentRing(list, hash)
  const bucketPoint = new Uint32Array(BUCKETS)
  for (let b = 0; b < BUCKETS; b++) bucketPoint[b] = ring.lookup(b * BUCKET_STEP)
  const h = keyHasher(hash)
  return new RingPlacement(list, ring, (key) => bucketPoint[h(key) & (BUCKETS - 1)]!)
}
