/**
 * mcrouter's `furc_hash` (mcrouter/lib/fbi/hash.c, the `Ch3` hash function; SPEC-more-clients
 * §5.2): a bit stream from MurmurHash64A (seed 4193360111) of the key, extended by rehashing the
 * previous 64-bit word, read d bits at a time (d = bitlength(m − 1)) until a value below m comes up.
 */

const M_HI = 0xc6a4a793 | 0
const M_LO = 0x5bd1e995
const SEED = 4193360111 | 0
const FURC_SHIFT = 23
const MAX_TRIES = 32
/** mcrouter's FURC_CACHE_SIZE: enough 64-bit words for every bit 32 tries can read. */
const CACHE_WORDS = 1024
export const FURC_MAX_POOL = 1 << 23

// 64-bit values are (hi, lo) pairs of int32s: V8 keeps int32 arithmetic unboxed, where u32
// values above 2^31 would become doubles (several times slower). Functions return the high word
// and leave the low word here.
let LO = 0

/** (ah:al) × (bh:bl) mod 2^64: returns the high word, the low word in LO. */
function mul(ah: number, al: number, bh: number, bl: number): number {
  const a0 = al & 0xffff
  const a1 = al >>> 16
  const b0 = bl & 0xffff
  const b1 = bl >>> 16
  let t = a0 * b0
  const w0 = t & 0xffff
  t = a1 * b0 + (t >>> 16)
  const w1 = t & 0xffff
  const w2 = t >>> 16
  t = a0 * b1 + w1
  LO = ((t & 0xffff) << 16) | w0
  return (a1 * b1 + w2 + (t >>> 16) + Math.imul(ah, bl) + Math.imul(al, bh)) | 0
}

/** MurmurHash64A's block step: h = (h ^ mix(k)) × m, mix(k) = ((k × m) ^ ((k × m) >> 47)) × m. High word returned, low in LO. */
function mixBlock(hh: number, hl: number, kh: number, kl: number): number {
  let xh = mul(kh, kl, M_HI, M_LO)
  xh = mul(xh, LO ^ (xh >>> 15), M_HI, M_LO)
  return mul(hh ^ xh, hl ^ LO, M_HI, M_LO)
}

/** MurmurHash64A's finish: h ^= h >> 47; h *= m; h ^= h >> 47. High word returned, low in LO. */
function finish(hh: number, hl: number): number {
  const h = mul(hh, hl ^ (hh >>> 15), M_HI, M_LO)
  LO ^= h >>> 15
  return h
}

/** MurmurHash64A(data[start..end), seed) with a 32-bit seed: the high word, the low word in LO. */
function murmur64A(data: Uint8Array, start: number, end: number, seed: number): number {
  const len = end - start
  let hh = mul(0, len, M_HI, M_LO)
  let hl = LO ^ seed
  let p = start
  const blocksEnd = start + (len & ~7)
  for (; p < blocksEnd; p += 8) {
    const kl = data[p]! | (data[p + 1]! << 8) | (data[p + 2]! << 16) | (data[p + 3]! << 24)
    const kh = data[p + 4]! | (data[p + 5]! << 8) | (data[p + 6]! << 16) | (data[p + 7]! << 24)
    hh = mixBlock(hh, hl, kh, kl)
    hl = LO
  }
  const rem = len & 7
  if (rem > 0) {
    let tl = 0
    let th = 0
    for (let j = 0; j < rem; j++) {
      if (j < 4) tl |= data[p + j]! << (8 * j)
      else th |= data[p + j]! << (8 * (j - 4))
    }
    hh = mul(hh ^ th, hl ^ tl, M_HI, M_LO)
    hl = LO
  }
  return finish(hh, hl)
}

/** MurmurHash64A (u64 as [hi, lo] u32s), for tests against known values. */
export function murmurHash64A(data: Uint8Array, seed: number): [number, number] {
  const hi = murmur64A(data, 0, data.length, seed | 0)
  return [hi >>> 0, LO >>> 0]
}

/** furc_hash over reusable scratch (one per placement; the hot path allocates nothing). */
export class Furc {
  private readonly words = new Int32Array(2 * CACHE_WORDS)
  private computed = -1
  private data: Uint8Array = new Uint8Array(0)
  private start = 0
  private end = 0

  private bit(idx: number): number {
    const ord = idx >>> 6
    const w = this.words
    while (this.computed < ord) {
      const n = ++this.computed
      let hi: number
      if (n === 0) {
        hi = murmur64A(this.data, this.start, this.end, SEED)
      } else {
        // murmur_rehash_64A: MurmurHash64A of the previous word's 8 bytes.
        hi = mul(0, 8, M_HI, M_LO)
        hi = mixBlock(hi, LO ^ SEED, w[2 * n - 1]!, w[2 * n - 2]!)
        hi = finish(hi, LO)
      }
      w[2 * n] = LO
      w[2 * n + 1] = hi
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
