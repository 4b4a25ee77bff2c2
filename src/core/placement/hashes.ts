/**
 * The hash primitives of the supported clients (SPEC §0-§6). Every function takes the bytes
 * `data[start..end)` and returns an unsigned 32-bit integer; none of them allocates.
 *
 * "signed bytes": C clients read keys through `char *`, which is signed on x86-64, so a byte
 * b >= 0x80 enters the hash sign-extended (`(b << 24) >> 24`, i.e. 0xFFFFFF00 | b).
 */

import type { CodePointBuffer } from './text.js'

// ---------------------------------------------------------------------------------------------
// CRC-32 (reflected 0xEDB88320, init and final xor 0xFFFFFFFF): zlib / PHP crc32().

const CRC_TABLE = (() => {
  const t = new Int32Array(256)
  for (let n = 0; n < 256; n++) {
    let c = n
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
    t[n] = c
  }
  return t
})()

export function crc32(data: Uint8Array, start = 0, end = data.length): number {
  let c = -1
  for (let i = start; i < end; i++) c = CRC_TABLE[(c ^ data[i]!) & 0xff]! ^ (c >>> 8)
  return (c ^ -1) >>> 0
}

// ---------------------------------------------------------------------------------------------
// FNV-1a variants with signed bytes.

/** FNV-1a 32 (offset 0x811C9DC5, prime 0x01000193) over sign-extended bytes (pecl memcache `fnv`, libmemcached `fnv1a_32`). */
export function fnv1a32Signed(data: Uint8Array, start = 0, end = data.length): number {
  let h = 0x811c9dc5 | 0
  for (let i = start; i < end; i++) h = Math.imul(h ^ ((data[i]! << 24) >> 24), 0x01000193)
  return h >>> 0
}

/**
 * libmemcached / twemproxy `fnv1a_64`: a u32 loop with init 0x84222325 and prime 0x1B3 over
 * sign-extended bytes, which equals the low 32 bits of 64-bit FNV-1a.
 */
export function fnv1a64LowSigned(data: Uint8Array, start = 0, end = data.length): number {
  let h = 0x84222325 | 0
  for (let i = start; i < end; i++) h = Math.imul(h ^ ((data[i]! << 24) >> 24), 0x1b3)
  return h >>> 0
}

// ---------------------------------------------------------------------------------------------
// Jenkins one-at-a-time with signed bytes: libmemcached's default hash.

export function oneAtATimeSigned(data: Uint8Array, start = 0, end = data.length): number {
  let h = 0
  for (let i = start; i < end; i++) {
    h = (h + ((data[i]! << 24) >> 24)) | 0
    h = (h + (h << 10)) | 0
    h ^= h >>> 6
  }
  h = (h + (h << 3)) | 0
  h ^= h >>> 11
  h = (h + (h << 15)) | 0
  return h >>> 0
}

// ---------------------------------------------------------------------------------------------
// MurmurHash3 x86_32 (pymemcache rendezvous).

export function murmur3_32(data: Uint8Array, start = 0, end = data.length, seed = 0): number {
  let h = seed | 0
  const len = end - start
  const blocksEnd = start + (len & ~3)
  let i = start
  for (; i < blocksEnd; i += 4) h = murmurStep(h, murmurBlock(data, i))
  if ((len & 3) !== 0) h ^= murmurTail(data, i, len & 3)
  return murmurFinish(h, len) >>> 0
}

/**
 * murmur3_32 of the same bytes under two seeds at once, into out[at] and out[at + 1] (a key's
 * 64-bit fingerprint, see engine/fingerprint-set.ts): one pass over the key, since the block
 * mixing does not depend on the seed; and written to an array rather than returned, because a
 * 32-bit result beyond V8's small integers is a heap number per call when the call is not
 * inlined (4 MB of garbage in a 500k-key drain's dedupe).
 */
export function murmur3_32x2(data: Uint8Array, start: number, end: number, seedA: number, seedB: number, out: Uint32Array, at: number): void {
  let a = seedA | 0
  let b = seedB | 0
  const len = end - start
  const blocksEnd = start + (len & ~3)
  let i = start
  for (; i < blocksEnd; i += 4) {
    const k = murmurBlock(data, i)
    a = murmurStep(a, k)
    b = murmurStep(b, k)
  }
  if ((len & 3) !== 0) {
    const k = murmurTail(data, i, len & 3)
    a ^= k
    b ^= k
  }
  out[at] = murmurFinish(a, len)
  out[at + 1] = murmurFinish(b, len)
}

// The pieces of murmur3 x86_32 (small: the optimizer inlines them).

/** A 4-byte little-endian block, mixed: what enters the state. */
function murmurBlock(data: Uint8Array, i: number): number {
  return murmurMix(data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24))
}

/** The last 1–3 bytes, mixed. */
function murmurTail(data: Uint8Array, i: number, rem: number): number {
  let k = data[i]!
  if (rem > 1) k |= data[i + 1]! << 8
  if (rem > 2) k |= data[i + 2]! << 16
  return murmurMix(k)
}

function murmurMix(k: number): number {
  k = Math.imul(k, 0xcc9e2d51)
  k = (k << 15) | (k >>> 17)
  return Math.imul(k, 0x1b873593)
}

/** A mixed block into the state. */
function murmurStep(h: number, k: number): number {
  h ^= k
  h = (h << 13) | (h >>> 19)
  return (Math.imul(h, 5) + 0xe6546b64) | 0
}

/** The length and the final avalanche. */
function murmurFinish(h: number, len: number): number {
  h ^= len
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  return h ^ (h >>> 16)
}

// ---------------------------------------------------------------------------------------------
// Java String.hashCode (memjs): h = int32(31*h + unit) over UTF-16 code units.

/** Java `String.hashCode` of `units[0..len)` (UTF-16 code units), as a signed int32. */
export function javaHashCode(units: ArrayLike<number>, len = units.length): number {
  let h = 0
  for (let i = 0; i < len; i++) h = (Math.imul(31, h) + units[i]!) | 0
  return h
}

/**
 * Java `String.hashCode` (signed int32) of the string whose UTF-8 bytes are `key`: the hash runs
 * over UTF-16 code units, so an astral character counts as two surrogates. ASCII keys are hashed
 * straight from the bytes; others are decoded into `cps` (no allocation for well-formed UTF-8).
 */
export function javaStringHash(key: Uint8Array, cps: CodePointBuffer): number {
  let h = 0
  for (let i = 0; i < key.length; i++) {
    const b = key[i]!
    if (b >= 0x80) return javaStringHashDecoded(key, cps)
    h = (Math.imul(31, h) + b) | 0
  }
  return h
}

function javaStringHashDecoded(key: Uint8Array, cps: CodePointBuffer): number {
  const n = cps.decode(key)
  const buf = cps.buf
  let h = 0
  for (let i = 0; i < n; i++) {
    const cp = buf[i]!
    if (cp > 0xffff) {
      const v = cp - 0x10000
      h = (Math.imul(31, h) + (0xd800 | (v >>> 10))) | 0
      h = (Math.imul(31, h) + (0xdc00 | (v & 0x3ff))) | 0
    } else {
      h = (Math.imul(31, h) + cp) | 0
    }
  }
  return h
}

// ---------------------------------------------------------------------------------------------
// MD5, allocation-free. The digest is the four state words a, b, c, d written little-endian,
// so md5word(s, g) (SPEC §0: digest bytes 4g..4g+3 read little-endian) is simply state word g.

const MD5_TAIL = new Uint8Array(128)
/** MD5_TAIL as little-endian words where the machine is little-endian (then no shifting needed). */
const MD5_TAIL_WORDS = new Int32Array(MD5_TAIL.buffer)
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1
/** The 16 message words of the block md5Block works on. */
const X = new Int32Array(16)
let s0 = 0
let s1 = 0
let s2 = 0
let s3 = 0

/** One 64-byte block: its 16 little-endian words are w[at .. at + 16). */
function md5Block(w: Int32Array, at: number): void {
  const x0 = w[at]!
  const x1 = w[at + 1]!
  const x2 = w[at + 2]!
  const x3 = w[at + 3]!
  const x4 = w[at + 4]!
  const x5 = w[at + 5]!
  const x6 = w[at + 6]!
  const x7 = w[at + 7]!
  const x8 = w[at + 8]!
  const x9 = w[at + 9]!
  const x10 = w[at + 10]!
  const x11 = w[at + 11]!
  const x12 = w[at + 12]!
  const x13 = w[at + 13]!
  const x14 = w[at + 14]!
  const x15 = w[at + 15]!
  let a = s0
  let b = s1
  let c = s2
  let d = s3
  a = (a + (d ^ (b & (c ^ d))) + x0 + (0xd76aa478 | 0)) | 0
  a = (((a << 7) | (a >>> 25)) + b) | 0
  d = (d + (c ^ (a & (b ^ c))) + x1 + (0xe8c7b756 | 0)) | 0
  d = (((d << 12) | (d >>> 20)) + a) | 0
  c = (c + (b ^ (d & (a ^ b))) + x2 + 0x242070db) | 0
  c = (((c << 17) | (c >>> 15)) + d) | 0
  b = (b + (a ^ (c & (d ^ a))) + x3 + (0xc1bdceee | 0)) | 0
  b = (((b << 22) | (b >>> 10)) + c) | 0
  a = (a + (d ^ (b & (c ^ d))) + x4 + (0xf57c0faf | 0)) | 0
  a = (((a << 7) | (a >>> 25)) + b) | 0
  d = (d + (c ^ (a & (b ^ c))) + x5 + 0x4787c62a) | 0
  d = (((d << 12) | (d >>> 20)) + a) | 0
  c = (c + (b ^ (d & (a ^ b))) + x6 + (0xa8304613 | 0)) | 0
  c = (((c << 17) | (c >>> 15)) + d) | 0
  b = (b + (a ^ (c & (d ^ a))) + x7 + (0xfd469501 | 0)) | 0
  b = (((b << 22) | (b >>> 10)) + c) | 0
  a = (a + (d ^ (b & (c ^ d))) + x8 + 0x698098d8) | 0
  a = (((a << 7) | (a >>> 25)) + b) | 0
  d = (d + (c ^ (a & (b ^ c))) + x9 + (0x8b44f7af | 0)) | 0
  d = (((d << 12) | (d >>> 20)) + a) | 0
  c = (c + (b ^ (d & (a ^ b))) + x10 + (0xffff5bb1 | 0)) | 0
  c = (((c << 17) | (c >>> 15)) + d) | 0
  b = (b + (a ^ (c & (d ^ a))) + x11 + (0x895cd7be | 0)) | 0
  b = (((b << 22) | (b >>> 10)) + c) | 0
  a = (a + (d ^ (b & (c ^ d))) + x12 + 0x6b901122) | 0
  a = (((a << 7) | (a >>> 25)) + b) | 0
  d = (d + (c ^ (a & (b ^ c))) + x13 + (0xfd987193 | 0)) | 0
  d = (((d << 12) | (d >>> 20)) + a) | 0
  c = (c + (b ^ (d & (a ^ b))) + x14 + (0xa679438e | 0)) | 0
  c = (((c << 17) | (c >>> 15)) + d) | 0
  b = (b + (a ^ (c & (d ^ a))) + x15 + 0x49b40821) | 0
  b = (((b << 22) | (b >>> 10)) + c) | 0
  a = (a + (c ^ (d & (b ^ c))) + x1 + (0xf61e2562 | 0)) | 0
  a = (((a << 5) | (a >>> 27)) + b) | 0
  d = (d + (b ^ (c & (a ^ b))) + x6 + (0xc040b340 | 0)) | 0
  d = (((d << 9) | (d >>> 23)) + a) | 0
  c = (c + (a ^ (b & (d ^ a))) + x11 + 0x265e5a51) | 0
  c = (((c << 14) | (c >>> 18)) + d) | 0
  b = (b + (d ^ (a & (c ^ d))) + x0 + (0xe9b6c7aa | 0)) | 0
  b = (((b << 20) | (b >>> 12)) + c) | 0
  a = (a + (c ^ (d & (b ^ c))) + x5 + (0xd62f105d | 0)) | 0
  a = (((a << 5) | (a >>> 27)) + b) | 0
  d = (d + (b ^ (c & (a ^ b))) + x10 + 0x02441453) | 0
  d = (((d << 9) | (d >>> 23)) + a) | 0
  c = (c + (a ^ (b & (d ^ a))) + x15 + (0xd8a1e681 | 0)) | 0
  c = (((c << 14) | (c >>> 18)) + d) | 0
  b = (b + (d ^ (a & (c ^ d))) + x4 + (0xe7d3fbc8 | 0)) | 0
  b = (((b << 20) | (b >>> 12)) + c) | 0
  a = (a + (c ^ (d & (b ^ c))) + x9 + 0x21e1cde6) | 0
  a = (((a << 5) | (a >>> 27)) + b) | 0
  d = (d + (b ^ (c & (a ^ b))) + x14 + (0xc33707d6 | 0)) | 0
  d = (((d << 9) | (d >>> 23)) + a) | 0
  c = (c + (a ^ (b & (d ^ a))) + x3 + (0xf4d50d87 | 0)) | 0
  c = (((c << 14) | (c >>> 18)) + d) | 0
  b = (b + (d ^ (a & (c ^ d))) + x8 + 0x455a14ed) | 0
  b = (((b << 20) | (b >>> 12)) + c) | 0
  a = (a + (c ^ (d & (b ^ c))) + x13 + (0xa9e3e905 | 0)) | 0
  a = (((a << 5) | (a >>> 27)) + b) | 0
  d = (d + (b ^ (c & (a ^ b))) + x2 + (0xfcefa3f8 | 0)) | 0
  d = (((d << 9) | (d >>> 23)) + a) | 0
  c = (c + (a ^ (b & (d ^ a))) + x7 + 0x676f02d9) | 0
  c = (((c << 14) | (c >>> 18)) + d) | 0
  b = (b + (d ^ (a & (c ^ d))) + x12 + (0x8d2a4c8a | 0)) | 0
  b = (((b << 20) | (b >>> 12)) + c) | 0
  a = (a + (b ^ c ^ d) + x5 + (0xfffa3942 | 0)) | 0
  a = (((a << 4) | (a >>> 28)) + b) | 0
  d = (d + (a ^ b ^ c) + x8 + (0x8771f681 | 0)) | 0
  d = (((d << 11) | (d >>> 21)) + a) | 0
  c = (c + (d ^ a ^ b) + x11 + 0x6d9d6122) | 0
  c = (((c << 16) | (c >>> 16)) + d) | 0
  b = (b + (c ^ d ^ a) + x14 + (0xfde5380c | 0)) | 0
  b = (((b << 23) | (b >>> 9)) + c) | 0
  a = (a + (b ^ c ^ d) + x1 + (0xa4beea44 | 0)) | 0
  a = (((a << 4) | (a >>> 28)) + b) | 0
  d = (d + (a ^ b ^ c) + x4 + 0x4bdecfa9) | 0
  d = (((d << 11) | (d >>> 21)) + a) | 0
  c = (c + (d ^ a ^ b) + x7 + (0xf6bb4b60 | 0)) | 0
  c = (((c << 16) | (c >>> 16)) + d) | 0
  b = (b + (c ^ d ^ a) + x10 + (0xbebfbc70 | 0)) | 0
  b = (((b << 23) | (b >>> 9)) + c) | 0
  a = (a + (b ^ c ^ d) + x13 + 0x289b7ec6) | 0
  a = (((a << 4) | (a >>> 28)) + b) | 0
  d = (d + (a ^ b ^ c) + x0 + (0xeaa127fa | 0)) | 0
  d = (((d << 11) | (d >>> 21)) + a) | 0
  c = (c + (d ^ a ^ b) + x3 + (0xd4ef3085 | 0)) | 0
  c = (((c << 16) | (c >>> 16)) + d) | 0
  b = (b + (c ^ d ^ a) + x6 + 0x04881d05) | 0
  b = (((b << 23) | (b >>> 9)) + c) | 0
  a = (a + (b ^ c ^ d) + x9 + (0xd9d4d039 | 0)) | 0
  a = (((a << 4) | (a >>> 28)) + b) | 0
  d = (d + (a ^ b ^ c) + x12 + (0xe6db99e5 | 0)) | 0
  d = (((d << 11) | (d >>> 21)) + a) | 0
  c = (c + (d ^ a ^ b) + x15 + 0x1fa27cf8) | 0
  c = (((c << 16) | (c >>> 16)) + d) | 0
  b = (b + (c ^ d ^ a) + x2 + (0xc4ac5665 | 0)) | 0
  b = (((b << 23) | (b >>> 9)) + c) | 0
  a = (a + (c ^ (b | ~d)) + x0 + (0xf4292244 | 0)) | 0
  a = (((a << 6) | (a >>> 26)) + b) | 0
  d = (d + (b ^ (a | ~c)) + x7 + 0x432aff97) | 0
  d = (((d << 10) | (d >>> 22)) + a) | 0
  c = (c + (a ^ (d | ~b)) + x14 + (0xab9423a7 | 0)) | 0
  c = (((c << 15) | (c >>> 17)) + d) | 0
  b = (b + (d ^ (c | ~a)) + x5 + (0xfc93a039 | 0)) | 0
  b = (((b << 21) | (b >>> 11)) + c) | 0
  a = (a + (c ^ (b | ~d)) + x12 + 0x655b59c3) | 0
  a = (((a << 6) | (a >>> 26)) + b) | 0
  d = (d + (b ^ (a | ~c)) + x3 + (0x8f0ccc92 | 0)) | 0
  d = (((d << 10) | (d >>> 22)) + a) | 0
  c = (c + (a ^ (d | ~b)) + x10 + (0xffeff47d | 0)) | 0
  c = (((c << 15) | (c >>> 17)) + d) | 0
  b = (b + (d ^ (c | ~a)) + x1 + (0x85845dd1 | 0)) | 0
  b = (((b << 21) | (b >>> 11)) + c) | 0
  a = (a + (c ^ (b | ~d)) + x8 + 0x6fa87e4f) | 0
  a = (((a << 6) | (a >>> 26)) + b) | 0
  d = (d + (b ^ (a | ~c)) + x15 + (0xfe2ce6e0 | 0)) | 0
  d = (((d << 10) | (d >>> 22)) + a) | 0
  c = (c + (a ^ (d | ~b)) + x6 + (0xa3014314 | 0)) | 0
  c = (((c << 15) | (c >>> 17)) + d) | 0
  b = (b + (d ^ (c | ~a)) + x13 + 0x4e0811a1) | 0
  b = (((b << 21) | (b >>> 11)) + c) | 0
  a = (a + (c ^ (b | ~d)) + x4 + (0xf7537e82 | 0)) | 0
  a = (((a << 6) | (a >>> 26)) + b) | 0
  d = (d + (b ^ (a | ~c)) + x11 + (0xbd3af235 | 0)) | 0
  d = (((d << 10) | (d >>> 22)) + a) | 0
  c = (c + (a ^ (d | ~b)) + x2 + 0x2ad7d2bb) | 0
  c = (((c << 15) | (c >>> 17)) + d) | 0
  b = (b + (d ^ (c | ~a)) + x9 + (0xeb86d391 | 0)) | 0
  b = (((b << 21) | (b >>> 11)) + c) | 0

  s0 = (s0 + a) | 0
  s1 = (s1 + b) | 0
  s2 = (s2 + c) | 0
  s3 = (s3 + d) | 0
}

function md5Core(data: Uint8Array, start: number, end: number): void {
  s0 = 0x67452301
  s1 = 0xefcdab89 | 0
  s2 = 0x98badcfe | 0
  s3 = 0x10325476
  const len = end - start
  const fullEnd = start + (len - (len % 64))
  let o = start
  for (; o < fullEnd; o += 64) md5BlockAt(data, o)
  const rem = end - o
  const tail = MD5_TAIL
  for (let i = 0; i < rem; i++) tail[i] = data[o + i]!
  tail[rem] = 0x80
  const tailLen = rem < 56 ? 64 : 128
  tail.fill(0, rem + 1, tailLen - 8)
  // The length in bits, 64-bit little-endian, ends the last block.
  const bitsLo = (len * 8) >>> 0
  const bitsHi = Math.floor(len / 0x20000000) >>> 0
  for (let j = 0; j < 4; j++) {
    tail[tailLen - 8 + j] = bitsLo >>> (8 * j)
    tail[tailLen - 4 + j] = bitsHi >>> (8 * j)
  }
  md5BlockAt(tail, 0)
  if (tailLen === 128) md5BlockAt(tail, 64)
}

/**
 * md5Block over the 64 bytes at src[o]: the tail buffer is read as words in place on a
 * little-endian machine (most keys are one short block: no byte-by-byte gathering), anything
 * else is gathered into X.
 */
function md5BlockAt(src: Uint8Array, o: number): void {
  if (src === MD5_TAIL && LITTLE_ENDIAN) return md5Block(MD5_TAIL_WORDS, o >>> 2)
  for (let w = 0, p = o; w < 16; w++, p += 4) X[w] = src[p]! | (src[p + 1]! << 8) | (src[p + 2]! << 16) | (src[p + 3]! << 24)
  md5Block(X, 0)
}

/** md5word(data, 0): the first 4 digest bytes read little-endian (libmemcached / twemproxy / hashring "md5"). */
export function md5Word0(data: Uint8Array, start = 0, end = data.length): number {
  md5Core(data, start, end)
  return s0 >>> 0
}

/** Writes md5word(data, 0..3) into out[0..3]. */
export function md5Words(data: Uint8Array, out: Uint32Array, start = 0, end = data.length): void {
  md5Core(data, start, end)
  out[0] = s0
  out[1] = s1
  out[2] = s2
  out[3] = s3
}

/** The 16-byte MD5 digest (allocates; for construction time and tests). */
export function md5Digest(data: Uint8Array, start = 0, end = data.length): Uint8Array {
  const w = new Uint32Array(4)
  md5Words(data, w, start, end)
  const out = new Uint8Array(16)
  for (let g = 0; g < 4; g++) {
    const v = w[g]!
    out[4 * g] = v
    out[4 * g + 1] = v >>> 8
    out[4 * g + 2] = v >>> 16
    out[4 * g + 3] = v >>> 24
  }
  return out
}
