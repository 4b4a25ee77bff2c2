import { FingerprintSet } from './fingerprint-set.js'

/** Scratch for one key's fingerprint. */
const FP = new Uint32Array(2)

const SEEN = 0x80000000
const CAS_MASK = 0x7fffffff

/**
 * What mirror remembers per key of the active server: the key's 64-bit fingerprint (the same two
 * murmur3 hashes as FingerprintSet) → the low 31 bits of the CAS it last copied, plus one bit
 * "seen in this pass's dump". 12 bytes a slot in three typed arrays, open addressing, grown at
 * 3/4 full: 16–32 bytes per key (16–32 MB per million keys), no object per key.
 *
 * The low 31 bits of a CAS tell a change apart: memcached's CAS is one counter for the whole
 * server, so a key's new CAS equals its old one mod 2^31 only after 2^31 writes in between. A
 * stored value of 0 means "not copied yet" (a CAS whose low bits are 0 is then copied again
 * each pass: harmless). Keys that leave the active keep their slot until compact() drops every
 * key the last pass did not see.
 */
export class FingerprintCasMap {
  private hi: Uint32Array
  private lo: Uint32Array
  /** SEEN bit | cas31. */
  private val: Uint32Array
  private used = 0
  private mask: number

  constructor(expected = 1024) {
    let cap = 1024
    while (cap * 3 < expected * 4) cap *= 2
    this.hi = new Uint32Array(cap)
    this.lo = new Uint32Array(cap)
    this.val = new Uint32Array(cap)
    this.mask = cap - 1
  }

  get size(): number {
    return this.used
  }

  /** Bytes held by the table. */
  get bytes(): number {
    return this.hi.byteLength * 3
  }

  /**
   * Marks the key seen in this pass and says whether `cas` (decimal digits) differs from the CAS
   * last copied: true = copy it.
   */
  seeChanged(key: Uint8Array, cas: string): boolean {
    const slot = this.slotOf(key, 0, key.length, true)
    const v = this.val[slot]!
    this.val[slot] = v | SEEN
    const c = v & CAS_MASK
    return c === 0 || c !== cas31(cas)
  }

  /** Records the CAS (digits) a copy of the key was read with. */
  copied(key: Uint8Array, cas: Uint8Array): void {
    const slot = this.slotOf(key, 0, key.length, true)
    this.val[slot] = (this.val[slot]! & SEEN) | cas31Bytes(cas)
  }

  /** Whether the key was seen in this pass's dump. */
  seen(key: Uint8Array, start = 0, end = key.length): boolean {
    const slot = this.slotOf(key, start, end, false)
    return slot >= 0 && (this.val[slot]! & SEEN) !== 0
  }

  /** Starts a pass: no key seen yet. */
  clearSeen(): void {
    const v = this.val
    for (let i = 0; i < v.length; i++) v[i] = v[i]! & CAS_MASK
  }

  /** How many keys the pass saw. */
  seenCount(): number {
    let n = 0
    const v = this.val
    for (let i = 0; i < v.length; i++) if ((v[i]! & SEEN) !== 0) n++
    return n
  }

  /** Drops every key the pass did not see (gone from the active), shrinking the table to fit. */
  compact(): void {
    const { hi, lo, val } = this
    let cap = 1024
    const keep = this.seenCount()
    while (cap * 3 < keep * 4 * 2) cap *= 2
    this.hi = new Uint32Array(cap)
    this.lo = new Uint32Array(cap)
    this.val = new Uint32Array(cap)
    this.mask = cap - 1
    this.used = 0
    for (let i = 0; i < hi.length; i++) if (hi[i] !== 0 && (val[i]! & SEEN) !== 0) this.val[this.insert(hi[i]!, lo[i]!)] = val[i]!
  }

  /** The key's slot; -1 when absent and `create` is false. */
  private slotOf(key: Uint8Array, start: number, end: number, create: boolean): number {
    FingerprintSet.fingerprint(key, start, end, FP, 0) // the first word is never 0: 0 marks an empty slot
    const h = FP[0]!
    const l = FP[1]!
    let i = (h ^ Math.imul(l, 0x9e3779b1)) & this.mask
    while (this.hi[i] !== 0) {
      if (this.hi[i] === h && this.lo[i] === l) return i
      i = (i + 1) & this.mask
    }
    if (!create) return -1
    if ((this.used + 1) * 4 > this.hi.length * 3) {
      this.grow()
      return this.insert(h, l)
    }
    this.hi[i] = h
    this.lo[i] = l
    this.val[i] = 0
    this.used++
    return i
  }

  private insert(h: number, l: number): number {
    let i = (h ^ Math.imul(l, 0x9e3779b1)) & this.mask
    while (this.hi[i] !== 0) i = (i + 1) & this.mask
    this.hi[i] = h
    this.lo[i] = l
    this.used++
    return i
  }

  private grow(): void {
    const { hi, lo, val } = this
    const cap = hi.length * 2
    this.hi = new Uint32Array(cap)
    this.lo = new Uint32Array(cap)
    this.val = new Uint32Array(cap)
    this.mask = cap - 1
    this.used = 0
    for (let i = 0; i < hi.length; i++) if (hi[i] !== 0) this.val[this.insert(hi[i]!, lo[i]!)] = val[i]!
  }
}

/** The low 31 bits of a decimal CAS, without building a number past 2^53. */
export function cas31(digits: string): number {
  let x = 0
  for (let i = 0; i < digits.length; i++) x = (x * 10 + (digits.charCodeAt(i) - 48)) % 0x80000000
  return x
}

function cas31Bytes(digits: Uint8Array): number {
  let x = 0
  for (let i = 0; i < digits.length; i++) x = (x * 10 + (digits[i]! - 48)) % 0x80000000
  return x
}
