import { murmur3_32 } from '../placement/hashes.js'

/**
 * A set of 64-bit key fingerprints (two independent 32-bit murmur3 hashes) in open-addressed
 * typed arrays: 8 bytes a key at a load of at most 1/2, no object per key. It deduplicates
 * dump entries (a dump is a live walk: a key can come twice) and remembers which keys a job
 * has handled across passes. A false "seen" needs a 64-bit collision: ~n²/2^65 (about 3e-6
 * for 10M keys).
 */
export class FingerprintSet {
  private hi: Uint32Array
  private lo: Uint32Array
  private used = 0
  private mask: number

  constructor(expected = 1024) {
    let cap = 1024
    while (cap < expected * 2) cap *= 2
    this.hi = new Uint32Array(cap)
    this.lo = new Uint32Array(cap)
    this.mask = cap - 1
  }

  get size(): number {
    return this.used
  }

  /** Adds the key; returns false if it was already there. */
  add(key: Uint8Array, start = 0, end = key.length): boolean {
    const h = (murmur3_32(key, start, end, 0x9747b28c) | 1) >>> 0 // 0 marks an empty slot
    return this.insert(h, murmur3_32(key, start, end, 0x5bd1e995))
  }

  has(key: Uint8Array, start = 0, end = key.length): boolean {
    const h = (murmur3_32(key, start, end, 0x9747b28c) | 1) >>> 0
    const l = murmur3_32(key, start, end, 0x5bd1e995)
    let i = (h ^ Math.imul(l, 0x9e3779b1)) & this.mask
    while (this.hi[i] !== 0) {
      if (this.hi[i] === h && this.lo[i] === l) return true
      i = (i + 1) & this.mask
    }
    return false
  }

  private insert(h: number, l: number): boolean {
    let i = (h ^ Math.imul(l, 0x9e3779b1)) & this.mask
    while (this.hi[i] !== 0) {
      if (this.hi[i] === h && this.lo[i] === l) return false
      i = (i + 1) & this.mask
    }
    this.hi[i] = h
    this.lo[i] = l
    this.used++
    if (this.used * 2 > this.hi.length) this.grow()
    return true
  }

  private grow(): void {
    const oldHi = this.hi
    const oldLo = this.lo
    const cap = oldHi.length * 2
    this.hi = new Uint32Array(cap)
    this.lo = new Uint32Array(cap)
    this.mask = cap - 1
    this.used = 0
    for (let i = 0; i < oldHi.length; i++) if (oldHi[i] !== 0) this.insert(oldHi[i]!, oldLo[i]!)
  }
}
