import { murmur3_32x2 } from '../placement/hashes.js'

/** Scratch for one key's fingerprint (add, has). */
const FP = new Uint32Array(2)

/** Slots per expected key when presized (load 0.7), and the load at which the table grows. */
const PRESIZE_LOAD = 0.7
const MAX_LOAD = 0.8
const MIN_SLOTS = 1024

/**
 * A set of 64-bit key fingerprints (two independent 32-bit murmur3 hashes) in one open-addressed
 * typed array, each slot's two words side by side (one cache line per probe): about 11 bytes a
 * key when presized (`expected`), no object per key. It deduplicates dump entries (a dump is a
 * live walk: a key can come twice) and remembers which keys a job has handled across passes. A
 * false "seen" needs a 64-bit collision: ~n²/2^65 (about 3e-6 for 10M keys).
 */
export class FingerprintSet {
  /** Slot k is words 2k (first hash, never 0: 0 marks an empty slot) and 2k + 1. */
  private slots: Uint32Array
  private cap: number
  private limit: number
  private used = 0
  /** What addAll's touching loop read: kept, so that the loop is not optimized away. */
  private touched = 0

  constructor(expected = 1024) {
    this.cap = Math.max(MIN_SLOTS, Math.ceil(expected / PRESIZE_LOAD))
    this.slots = new Uint32Array(this.cap * 2)
    this.limit = Math.floor(this.cap * MAX_LOAD)
  }

  get size(): number {
    return this.used
  }

  /** Adds the key; returns false if it was already there. */
  add(key: Uint8Array, start = 0, end = key.length): boolean {
    FingerprintSet.fingerprint(key, start, end, FP, 0)
    return this.insert(FP[0]!, FP[1]!)
  }

  /**
   * The key's fingerprint (the two words `add` stores) into out[at], out[at + 1], for addAll:
   * murmur3_32 of the key under two seeds, the first with its low bit set (0 marks an empty slot).
   */
  static fingerprint(key: Uint8Array, start: number, end: number, out: Uint32Array, at: number): void {
    murmur3_32x2(key, start, end, 0x9747b28c, 0x5bd1e995, out, at)
    out[at] = out[at]! | 1
  }

  /**
   * Adds the n fingerprints in `fps` (pairs, from `fingerprint`), in order; fresh[j] = 1 where
   * one was added, 0 where it was already there (also: earlier in the same call). Why in a batch:
   * a table larger than the CPU cache misses (cache and TLB) on nearly every probe, and a probe
   * made between other work waits for its miss alone. Here a first loop touches every home slot;
   * those loads do not depend on each other, so their misses overlap, and the inserts then find
   * the slots cached.
   */
  addAll(fps: Uint32Array, n: number, fresh: Uint8Array): void {
    const s = this.slots
    let touched = 0
    for (let j = 0; j < n; j++) touched ^= s[2 * this.home(fps[2 * j]!, fps[2 * j + 1]!)]!
    this.touched = touched
    for (let j = 0; j < n; j++) fresh[j] = this.insert(fps[2 * j]!, fps[2 * j + 1]!) ? 1 : 0
  }

  has(key: Uint8Array, start = 0, end = key.length): boolean {
    FingerprintSet.fingerprint(key, start, end, FP, 0)
    const h = FP[0]!
    const l = FP[1]!
    const s = this.slots
    for (let i = this.home(h, l); s[2 * i] !== 0; i = i + 1 === this.cap ? 0 : i + 1) {
      if (s[2 * i] === h && s[2 * i + 1] === l) return true
    }
    return false
  }

  /** Home slot: the mixed hash scaled onto [0, cap) (multiply-shift, any capacity). */
  private home(h: number, l: number): number {
    return Math.floor(((h ^ Math.imul(l, 0x9e3779b1)) >>> 0) * (this.cap / 4294967296))
  }

  private insert(h: number, l: number): boolean {
    l >>>= 0
    const s = this.slots
    let i = this.home(h, l)
    while (s[2 * i] !== 0) {
      if (s[2 * i] === h && s[2 * i + 1] === l) return false
      i = i + 1 === this.cap ? 0 : i + 1
    }
    s[2 * i] = h
    s[2 * i + 1] = l
    this.used++
    if (this.used > this.limit) this.grow()
    return true
  }

  private grow(): void {
    const old = this.slots
    this.cap *= 2
    this.slots = new Uint32Array(this.cap * 2)
    this.limit = Math.floor(this.cap * MAX_LOAD)
    this.used = 0
    for (let k = 0; k < old.length; k += 2) if (old[k] !== 0) this.insert(old[k]!, old[k + 1]!)
  }
}
