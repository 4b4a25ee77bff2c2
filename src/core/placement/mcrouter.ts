/**
 * mcrouter `HashRoute` / `PoolRoute` hash functions (SPEC-more-clients §5), over the pool's
 * servers in configuration order. One server takes every key without hashing.
 *
 * Routing key (carbon::Keys): a key `/region/cluster/rest` is hashed as `rest` (the prefix up to and
 * including the second "/" after the leading one), and only the part before the first `|#|` is
 * hashed. mcrouter stores the key without its routing prefix and with any `|#|...` suffix, so a
 * stored name is placed by cutting at its first `|#|`.
 *
 * Ch3: furc_hash(routing key, n). Crc32: (crc32(routing key) & 0x7fffffff) mod n.
 * WeightedCh3: furc_hash, accepted when SpookyHashV2-32(seed 0xface2014) < weight × (2^32 − 1);
 *   otherwise retry with the key plus the decimal digits of a salt (least significant digit
 *   first), up to 32 tries; the last index tried wins.
 *
 * chain: the owner i, then (i+1) mod n, ... (mcrouter has no replica order of its own for a hash).
 */

import { checkServers } from './common.js'
import { Furc, FURC_MAX_POOL } from './furc.js'
import { crc32 } from './hashes.js'
import { identitySlots, SlotPlacement } from './slots.js'
import { spookyHash32 } from './spooky.js'
import type { Placement, PlacementServer } from './types.js'

export type McrouterHash = 'ch3' | 'crc32' | 'weighted-ch3'

const SLASH = 0x2f
const BAR = 0x7c
const HASH = 0x23
const WEIGHTED_SEED = 0xface2014
const WEIGHTED_TRIES = 32
const U32_MAX = 0xffffffff

/** Start offset of the routing key: after a `/region/cluster/` prefix, or 0. */
export function routingKeyStart(key: Uint8Array): number {
  if (key.length === 0 || key[0] !== SLASH) return 0
  const first = key.indexOf(SLASH, 1)
  if (first < 0) return 0
  const second = key.indexOf(SLASH, first + 1)
  return second < 0 ? 0 : second + 1
}

/** End offset of the hashed part: the first `|#|` at or after `start`, or the key's end. */
export function routingKeyEnd(key: Uint8Array, start: number): number {
  for (let i = start; i + 2 < key.length; i++) {
    if (key[i] === BAR && key[i + 1] === HASH && key[i + 2] === BAR) return i
  }
  return key.length
}

export function mcrouterPlacement(servers: readonly PlacementServer[], hash: McrouterHash): Placement {
  const strategy = `mcrouter-${hash}`
  const list = checkServers(strategy, servers, { weights: hash === 'weighted-ch3' ? 'fraction' : 'integer' })
  const n = list.length
  if (n > FURC_MAX_POOL) throw new Error(`placement ${strategy}: ${n} servers; mcrouter hashes at most ${FURC_MAX_POOL}`)
  const slots = identitySlots(n)
  if (hash === 'crc32') {
    return new SlotPlacement(list, slots, (key) => {
      const start = routingKeyStart(key)
      return ((crc32(key, start, routingKeyEnd(key, start)) & 0x7fffffff) >>> 0) % n
    })
  }
  const furc = new Furc()
  if (hash === 'ch3') {
    return new SlotPlacement(list, slots, (key) => {
      const start = routingKeyStart(key)
      return furc.hash(key, start, routingKeyEnd(key, start), n)
    })
  }
  const limits = new Float64Array(n)
  list.forEach((s, i) => (limits[i] = Math.floor(s.weight * U32_MAX)))
  let salted = new Uint8Array(256)
  return new SlotPlacement(list, slots, (key) => {
    const start = routingKeyStart(key)
    const end = routingKeyEnd(key, start)
    let index = furc.hash(key, start, end, n)
    if (spookyHash32(key, start, end, WEIGHTED_SEED) < limits[index]!) return index
    const len = end - start
    if (salted.length < len + 8) salted = new Uint8Array(len + 8)
    for (let i = 0; i < len; i++) salted[i] = key[start + i]!
    for (let salt = 0; salt < WEIGHTED_TRIES - 1; salt++) {
      let k = len
      let v = salt
      do {
        salted[k++] = 0x30 + (v % 10)
        v = Math.floor(v / 10)
      } while (v > 0)
      index = furc.hash(salted, 0, k, n)
      if (spookyHash32(salted, 0, k, WEIGHTED_SEED) < limits[index]!) return index
    }
    return index
  })
}
