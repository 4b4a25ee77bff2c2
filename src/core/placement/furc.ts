/**
 * mcrouter's `furc_hash` (mcrouter/lib/fbi/hash.c, the `Ch3` hash function; SPEC-more-clients
 * §5.2): a bit stream from MurmurHash64A (seed 4193360111) of the key, extended by rehashing the
 * previous 64-bit word, read d bits at a time (d = bitlength(m − 1)) until a value below m comes up.
 */

import { le32, mul64, R64 } from './u64.js'

const M_HI = 0xc6a4a793
const M_LO = 0x5bd1e995
const SEED = 4193360111
const FURC_SHIFT = 23
const MAX_TRIES = 32
/** mcrouter's FURC_CACHE_SIZE: enough 64-bit words for every bit 32 tries can read. */
const CACHE_WORDS = 1024
export const FURC_MAX_POOL = 1 << 23

/** h ^= h >> 47; h *= m; h ^= h >> 47 on (hi, lo), result in R64. */
function finish(hi: number, lo: number): void {
  lo = (lo ^ (hi >>> 15)) >>> 0
  mul64(hi, lo, M_HI, M_LO)
  R64.lo = (R64.lo ^ (R64.hi >>> 15)) >>> 0
}

/** h = (h ^ mixed(k)) × m, where mixed(k) = ((k × m) ^ ((k × m) >> 47)) × m; result in R64. */
function mixBlock(hh: number, hl: number, kh: number, kl: number): void {
  mul64(kh, kl, M_HI, M_LO)
  mul64(R64.hi, (R64.lo ^ (R64.hi >>> 15)) >>> 0, M_HI, M_LO)
  mul64((hh ^ R64.hi) >>> 0, (hl ^ R64.lo) >>> 0, M_HI, M_LO)
}

/** MurmurHash64A(data[start..end), seed) with a 32-bit seed; result in R64. */
export function murmur64A(data: Uint8Array, start: number, end: number, seed: number): void {
  const len = end - start
  mul64(0, len, M_HI, M_LO)
  let hh = R64.hi
  let hl = (R64.lo ^ seed) >>> 0
  let p = start
  const blocksEnd = start + (len & ~7)
  for (; p < blocksEnd; p += 8) {
    mixBlock(hh, hl, le32(data, p + 4), le32(data, p))
    hh = R64.hi
    hl = R64.lo
  }
  const rem = len & 7
  if (rem > 0) {
    let tl = 0
    let th = 0
    for (let j = 0; j < rem; j++) {
      if (j < 4) tl |= data[p + j]! << (8 * j)
      else th |= data[p + j]! << (8 * (j - 4))
    }
    mul64((hh ^ th) >>> 0, (hl ^ tl) >>> 0, M_HI, M_LO)
    hh = R64.hi
    hl = R64.lo
  }
  finish(hh, hl)
}

/** furc_hash over reusable scratch (one per placement; the hot path allocates nothing). */
export class Furc {
  private readonly words = new Uint32Array(2 * CACHE_WORDS)
  private computed = -1
  private data: Uint8Array = new Uint8Array(0)
  private start = 0
  private end = 0

  private bit(idx: number): number {
    const ord = idx >>> 6
    const w = this.words
    while (this.computed < ord) {
      const n = ++this.computed
      if (n === 0) {
        murmur64A(this.data, this.start, this.end, SEED)
      } else {
        // murmur_rehash_64A: MurmurHash64A of the previous word's 8 bytes.
        mul64(0, 8, M_HI, M_LO)
        mixBlock(R64.hi, (R64.lo ^ SEED) >>> 0, w[2 * n - 1]!, w[2 * n - 2]!)
        finish(R64.hi, R64.lo)
      }
      w[2 * n] = R64.lo
      w[2 * n + 1] = R64.hi
    }
    const b = idx & 63
    return b < 32 ? (w[2 * ord]! >>> b) & 1 : (w[2 * ord + 1]! >>> (b - 32)) & 1
  }

  /** furc_hash(data[start..end), m): a server index in 0..m−1. */
  hash(data: Uint8Array, start: number, end: number, m: number): number {
    if (m <= 1) return 0
    this.data = data
    this.start = start
    this.end = end
    this.computed = -1
    let d = 32 - Math.clz32(m - 1)
    let a = d
    for (let t = 0; t < MAX_TRIES; t++) {
      while (this.bit(a) === 0) {
        if (--d === 0) return 0
        a = d
      }
      a += FURC_SHIFT
      let num = 1
      for (let i = 0; i < d - 1; i++) {
        num = (num << 1) | this.bit(a)
        a += FURC_SHIFT
      }
      if (num < m) return num
    }
    return 0
  }
}
