/**
 * Unsigned 64-bit arithmetic on (hi, lo) u32 pairs, for the 64-bit hashes of mcrouter
 * (MurmurHash64A, SpookyHashV2). BigInt would allocate on every operation; these do not.
 */

/** High and low words of the last mul64 result. */
export const R64 = { hi: 0, lo: 0 }

/** (ah:al) × (bh:bl) mod 2^64 into R64. */
export function mul64(ah: number, al: number, bh: number, bl: number): void {
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
  R64.lo = (((t & 0xffff) << 16) | w0) >>> 0
  R64.hi = (a1 * b1 + w2 + (t >>> 16) + Math.imul(ah, bl) + Math.imul(al, bh)) >>> 0
}

/** Little-endian u32 at data[p..p+4). */
export function le32(data: Uint8Array, p: number): number {
  return (data[p]! | (data[p + 1]! << 8) | (data[p + 2]! << 16) | (data[p + 3]! << 24)) >>> 0
}
