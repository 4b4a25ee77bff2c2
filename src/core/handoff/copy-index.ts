import { murmur3_32x2 } from '../placement/hashes.js'

/**
 * The copy hand-off's memory of its latest copy of each (key, destination): which journal record
 * is the latest for it, and the CAS the destination gave that copy (0 = unknown: the add found
 * the key there, or the write was sent and never answered). The journal is append-only, so a key
 * refreshed after its copy has several records: only the latest describes what the destination
 * holds, and the catch-up acts on that one alone.
 *
 * It also keeps the source's CAS of the value copied (0 = unknown), so the follower's refresher
 * can tell a copy that is already current (the catch-up re-copied it first) from a stale one.
 *
 * Open addressing over typed arrays: 28 bytes a slot, grown at 3/4 full (37–75 bytes a copy),
 * no object per key. A (key, destination) is a 64-bit fingerprint (two murmur3 hashes seeded
 * with the destination index): a false match needs a 64-bit collision.
 */
export class CopyIndex {
  private hi: Uint32Array
  private lo: Uint32Array
  private seqs: Uint32Array
  private casHi: Uint32Array
  private casLo: Uint32Array
  private srcHi: Uint32Array
  private srcLo: Uint32Array
  private used = 0
  private mask: number

  constructor(expected = 1024) {
    let cap = 1024
    while (cap * 3 < expected * 4) cap *= 2
    this.mask = cap - 1
    this.hi = new Uint32Array(cap)
    this.lo = new Uint32Array(cap)
    this.seqs = new Uint32Array(cap)
    this.casHi = new Uint32Array(cap)
    this.casLo = new Uint32Array(cap)
    this.srcHi = new Uint32Array(cap)
    this.srcLo = new Uint32Array(cap)
  }

  get size(): number {
    return this.used
  }

  /**
   * Records that journal record `seq` is now the latest for (key, target), with the destination
   * CAS and the source CAS of the value copied (digits; undefined or empty = unknown).
   */
  set(key: Uint8Array, target: number, seq: number, destCas: Uint8Array | undefined, sourceCas?: Uint8Array): void {
    const i = this.slot(key, target, true)
    this.seqs[i] = seq
    digits64(destCas, this.casHi, this.casLo, i)
    digits64(sourceCas, this.srcHi, this.srcLo, i)
  }

  /** Whether memdrain's latest copy of (key, target) has a known destination CAS and was read from the source at `sourceCas` (digits). */
  copiedAt(key: Uint8Array, target: number, sourceCas: Uint8Array): boolean {
    const i = this.slot(key, target, false)
    if (i < 0 || (this.casHi[i] === 0 && this.casLo[i] === 0)) return false
    const h = this.srcHi[i]!
    const l = this.srcLo[i]!
    if (h === 0 && l === 0) return false
    digits64(sourceCas, scratchHi, scratchLo, 0)
    return scratchHi[0] === h && scratchLo[0] === l
  }

  /** The latest record's number for (key, target), -1 when none. */
  latest(key: Uint8Array, target: number): number {
    const i = this.slot(key, target, false)
    return i < 0 ? -1 : this.seqs[i]!
  }

  /** The CAS of memdrain's copy at the destination, as digits; undefined when unknown or no copy is known. */
  destCas(key: Uint8Array, target: number): string | undefined {
    const i = this.slot(key, target, false)
    if (i < 0) return undefined
    const h = this.casHi[i]!
    const l = this.casLo[i]!
    if (h === 0 && l === 0) return undefined
    return ((BigInt(h) << 32n) | BigInt(l)).toString()
  }

  /** Whether memdrain has (or may have) a copy of key at target. */
  has(key: Uint8Array, target: number): boolean {
    return this.slot(key, target, false) >= 0
  }

  /**
   * The copy is gone (deleted by memdrain, or replaced by someone else): the slot stays as a
   * tombstone whose record number matches no record, so the catch-up leaves the key alone.
   */
  forget(key: Uint8Array, target: number): void {
    const i = this.slot(key, target, false)
    if (i < 0) return
    this.seqs[i] = 0xffffffff
    this.casHi[i] = 0
    this.casLo[i] = 0
    this.srcHi[i] = 0
    this.srcLo[i] = 0
  }

  private slot(key: Uint8Array, target: number, create: boolean): number {
    const seed = Math.imul(target + 1, 0x01000193)
    murmur3_32x2(key, 0, key.length, 0x9747b28c ^ seed, 0x5bd1e995 ^ seed, FP, 0)
    const h = (FP[0]! | 1) >>> 0 // 0 marks an empty slot
    const l = FP[1]!
    let i = (h ^ Math.imul(l, 0x9e3779b1)) & this.mask
    while (this.hi[i] !== 0) {
      if (this.hi[i] === h && this.lo[i] === l) return i
      i = (i + 1) & this.mask
    }
    if (!create) return -1
    if ((this.used + 1) * 4 > this.hi.length * 3) {
      this.grow()
      return this.slot(key, target, true)
    }
    this.hi[i] = h
    this.lo[i] = l
    this.used++
    return i
  }

  private grow(): void {
    const { hi, lo, seqs, casHi, casLo, srcHi, srcLo } = this
    const cap = hi.length * 2
    this.mask = cap - 1
    this.hi = new Uint32Array(cap)
    this.lo = new Uint32Array(cap)
    this.seqs = new Uint32Array(cap)
    this.casHi = new Uint32Array(cap)
    this.casLo = new Uint32Array(cap)
    this.srcHi = new Uint32Array(cap)
    this.srcLo = new Uint32Array(cap)
    for (let j = 0; j < hi.length; j++) {
      if (hi[j] === 0) continue
      let i = (hi[j]! ^ Math.imul(lo[j]!, 0x9e3779b1)) & this.mask
      while (this.hi[i] !== 0) i = (i + 1) & this.mask
      this.hi[i] = hi[j]!
      this.lo[i] = lo[j]!
      this.seqs[i] = seqs[j]!
      this.casHi[i] = casHi[j]!
      this.casLo[i] = casLo[j]!
      this.srcHi[i] = srcHi[j]!
      this.srcLo[i] = srcLo[j]!
    }
  }
}

/** Scratch for one (key, destination) fingerprint. */
const FP = new Uint32Array(2)
const scratchHi = new Uint32Array(1)
const scratchLo = new Uint32Array(1)

/** A CAS in decimal digits (up to 2^64 - 1) into hi[i], lo[i]; 0 when undefined or empty. */
function digits64(digits: Uint8Array | undefined, hi: Uint32Array, lo: Uint32Array, i: number): void {
  let h = 0
  let l = 0
  if (digits !== undefined) {
    for (let j = 0; j < digits.length; j++) {
      l = l * 10 + (digits[j]! - 48)
      const carry = Math.floor(l / 4294967296)
      l -= carry * 4294967296
      h = (h * 10 + carry) % 4294967296
    }
  }
  hi[i] = h
  lo[i] = l
}
