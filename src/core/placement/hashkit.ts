/**
 * twemproxy 0.5.0's twelve key hashes (src/hashkit/nc_*.c), as SPEC-more-clients.md "The twelve
 * key hashes" pins them down. Each takes `data[start..end)` and returns a u32 without allocating.
 *
 * "sext": twemproxy reads keys through `char *`, signed on x86-64, so a byte >= 0x80 enters as
 * 0xFFFFFF00 | b. That matters for one_at_a_time, the four FNVs and hsieh's 3-byte tail; the CRCs
 * mask it away and md5, murmur and jenkins read unsigned bytes.
 */

import { crc32, fnv1a32Signed, fnv1a64LowSigned, md5Word0, oneAtATimeSigned } from './hashes.js'

export type ByteHash = (data: Uint8Array, start?: number, end?: number) => number

export const TWEMPROXY_HASHES = [
  'one_at_a_time',
  'md5',
  'crc16',
  'crc32',
  'crc32a',
  'fnv1_64',
  'fnv1a_64',
  'fnv1_32',
  'fnv1a_32',
  'hsieh',
  'murmur',
  'jenkins',
] as const
export type TwemproxyHash = (typeof TWEMPROXY_HASHES)[number]

// CRC-16/XMODEM table (poly 0x1021, MSB first).
const CRC16_TABLE = (() => {
  const t = new Uint16Array(256)
  for (let n = 0; n < 256; n++) {
    let c = n << 8
    for (let k = 0; k < 8; k++) c = c & 0x8000 ? ((c << 1) ^ 0x1021) & 0xffff : (c << 1) & 0xffff
    t[n] = c
  }
  return t
})()

/** twemproxy `crc16`: a CRC-16/XMODEM step on a u32 that is never masked, so all 32 bits carry history. */
export function crc16Twemproxy(data: Uint8Array, start = 0, end = data.length): number {
  let c = 0
  for (let i = start; i < end; i++) c = (c << 8) ^ CRC16_TABLE[((c >>> 8) ^ data[i]!) & 0xff]!
  return c >>> 0
}

/** twemproxy `crc32` (= libmemcached `crc`): only 15 bits of the standard CRC-32. */
export function crc32Bits15(data: Uint8Array, start = 0, end = data.length): number {
  return (crc32(data, start, end) >>> 16) & 0x7fff
}

/** twemproxy `fnv1_64`: low 32 bits of 64-bit FNV-1 (multiply, then xor) over sign-extended bytes. */
export function fnv1_64LowSigned(data: Uint8Array, start = 0, end = data.length): number {
  let h = 0x84222325 | 0
  for (let i = start; i < end; i++) h = Math.imul(h, 0x1b3) ^ ((data[i]! << 24) >> 24)
  return h >>> 0
}

/** twemproxy `fnv1_32`: FNV-1 32 (multiply, then xor) over sign-extended bytes. */
export function fnv1_32Signed(data: Uint8Array, start = 0, end = data.length): number {
  let h = 0x811c9dc5 | 0
  for (let i = start; i < end; i++) h = Math.imul(h, 0x01000193) ^ ((data[i]! << 24) >> 24)
  return h >>> 0
}

/** twemproxy `hsieh`: SuperFastHash with the hash starting at 0 (not at the length); signed 3rd tail byte. */
export function hsiehTwemproxy(data: Uint8Array, start = 0, end = data.length): number {
  const len = end - start
  if (len <= 0) return 0
  let h = 0
  let p = start
  const blocksEnd = start + (len & ~3)
  for (; p < blocksEnd; p += 4) {
    h = (h + (data[p]! | (data[p + 1]! << 8))) | 0
    const tmp = ((data[p + 2]! | (data[p + 3]! << 8)) << 11) ^ h
    h = (h << 16) ^ tmp
    h = (h + (h >>> 11)) | 0
  }
  switch (len & 3) {
    case 3:
      h = (h + (data[p]! | (data[p + 1]! << 8))) | 0
      h ^= h << 16
      h ^= ((data[p + 2]! << 24) >> 24) << 18
      h = (h + (h >>> 11)) | 0
      break
    case 2:
      h = (h + (data[p]! | (data[p + 1]! << 8))) | 0
      h ^= h << 11
      h = (h + (h >>> 17)) | 0
      break
    case 1:
      h = (h + data[p]!) | 0
      h ^= h << 10
      h = (h + (h >>> 1)) | 0
      break
    default:
      break
  }
  h ^= h << 3
  h = (h + (h >>> 5)) | 0
  h ^= h << 4
  h = (h + (h >>> 17)) | 0
  h ^= h << 25
  h = (h + (h >>> 6)) | 0
  return h >>> 0
}

const MURMUR_M = 0x5bd1e995

/** twemproxy `murmur`: MurmurHash2 32-bit with seed 0xDEADBEEF × len. */
export function murmur2Twemproxy(data: Uint8Array, start = 0, end = data.length): number {
  const len = end - start
  let h = Math.imul(0xdeadbeef | 0, len) ^ len
  let p = start
  const blocksEnd = start + (len & ~3)
  for (; p < blocksEnd; p += 4) {
    let k = data[p]! | (data[p + 1]! << 8) | (data[p + 2]! << 16) | (data[p + 3]! << 24)
    k = Math.imul(k, MURMUR_M)
    k ^= k >>> 24
    k = Math.imul(k, MURMUR_M)
    h = Math.imul(h, MURMUR_M) ^ k
  }
  const rem = len & 3
  if (rem === 3) h ^= data[p + 2]! << 16
  if (rem >= 2) h ^= data[p + 1]! << 8
  if (rem >= 1) {
    h ^= data[p]!
    h = Math.imul(h, MURMUR_M)
  }
  h ^= h >>> 13
  h = Math.imul(h, MURMUR_M)
  h ^= h >>> 15
  return h >>> 0
}

/** Bob Jenkins' lookup3 `hashlittle(key, len, 13)` (twemproxy `jenkins`), read byte-wise little-endian. */
export function jenkinsLookup3(data: Uint8Array, start = 0, end = data.length): number {
  let len = end - start
  let a = (0xdeadbeef + len + 13) | 0
  let b = a
  let c = a
  let p = start
  while (len > 12) {
    a = (a + (data[p]! | (data[p + 1]! << 8) | (data[p + 2]! << 16) | (data[p + 3]! << 24))) | 0
    b = (b + (data[p + 4]! | (data[p + 5]! << 8) | (data[p + 6]! << 16) | (data[p + 7]! << 24))) | 0
    c = (c + (data[p + 8]! | (data[p + 9]! << 8) | (data[p + 10]! << 16) | (data[p + 11]! << 24))) | 0
    a = (a - c) | 0
    a ^= (c << 4) | (c >>> 28)
    c = (c + b) | 0
    b = (b - a) | 0
    b ^= (a << 6) | (a >>> 26)
    a = (a + c) | 0
    c = (c - b) | 0
    c ^= (b << 8) | (b >>> 24)
    b = (b + a) | 0
    a = (a - c) | 0
    a ^= (c << 16) | (c >>> 16)
    c = (c + b) | 0
    b = (b - a) | 0
    b ^= (a << 19) | (a >>> 13)
    a = (a + c) | 0
    c = (c - b) | 0
    c ^= (b << 4) | (b >>> 28)
    b = (b + a) | 0
    len -= 12
    p += 12
  }
  if (len === 0) return c >>> 0
  // The last 1..12 bytes, zero-padded, as three little-endian words.
  let w0 = 0
  let w1 = 0
  let w2 = 0
  for (let i = 0; i < len; i++) {
    const v = data[p + i]! << ((i & 3) * 8)
    if (i < 4) w0 |= v
    else if (i < 8) w1 |= v
    else w2 |= v
  }
  a = (a + w0) | 0
  b = (b + w1) | 0
  c = (c + w2) | 0
  c ^= b
  c = (c - ((b << 14) | (b >>> 18))) | 0
  a ^= c
  a = (a - ((c << 11) | (c >>> 21))) | 0
  b ^= a
  b = (b - ((a << 25) | (a >>> 7))) | 0
  c ^= b
  c = (c - ((b << 16) | (b >>> 16))) | 0
  a ^= c
  a = (a - ((c << 4) | (c >>> 28))) | 0
  b ^= a
  b = (b - ((a << 14) | (a >>> 18))) | 0
  c ^= b
  c = (c - ((b << 24) | (b >>> 8))) | 0
  return c >>> 0
}

const md5Key: ByteHash = (d, s, e) => md5Word0(d, s, e)

/** twemproxy's `hash:` value → the function. */
export const TWEMPROXY_HASH_FN: Readonly<Record<TwemproxyHash, ByteHash>> = {
  one_at_a_time: oneAtATimeSigned,
  md5: md5Key,
  crc16: crc16Twemproxy,
  crc32: crc32Bits15,
  crc32a: crc32,
  fnv1_64: fnv1_64LowSigned,
  fnv1a_64: fnv1a64LowSigned,
  fnv1_32: fnv1_32Signed,
  fnv1a_32: fnv1a32Signed,
  hsieh: hsiehTwemproxy,
  murmur: murmur2Twemproxy,
  jenkins: jenkinsLookup3,
}
