/**
 * The hash ring shared by the ring strategies (libmemcached consistent/ketama, twemproxy ketama,
 * node hashring, pecl memcache consistent): points sorted ascending (ties by server index), and
 * the SPEC §0 lookup rule: the first point whose value is >= h, wrapping to the first point.
 */

import { clampChain, SeenSet } from './common.js'
import type { Placement, PlacementServer } from './types.js'

/** Server index limit of the packed sort key (value × 2^21 + server stays below 2^53). */
const OWNER_SPACE = 0x200000

export class Ring {
  /** Point values, ascending. */
  readonly points: Uint32Array
  /** owners[i]: index (into the configured servers) of the server owning points[i]. */
  readonly owners: Uint32Array

  /**
   * index[b]: the first point whose top INDEX_BITS bits are >= b (index[2^bits] = points.length).
   * A lookup searches only between index[b] and index[b + 1] of its hash's bucket b: about one
   * point instead of a binary search over all of them (a lookup per key listed by a dump).
   */
  private readonly index: Uint32Array
  private readonly shift: number

  private constructor(points: Uint32Array, owners: Uint32Array) {
    this.points = points
    this.owners = owners
    // About four buckets a point, between 2^8 and 2^16 buckets.
    const bits = Math.min(16, Math.max(8, Math.ceil(Math.log2(points.length)) + 2))
    this.shift = 32 - bits
    const size = 2 ** bits
    this.index = new Uint32Array(size + 1)
    let p = 0
    for (let b = 0; b <= size; b++) {
      while (p < points.length && points[p]! >>> this.shift < b) p++
      this.index[b] = p
    }
  }

  /**
   * Sorts (value, owner) pairs by value, then owner. `ties: 'last'` keeps only the highest owner of
   * equal points, as a Java TreeMap filled in configuration order does (spymemcached: a later
   * server's `put` replaces an earlier one's point).
   */
  static build(values: readonly number[], owners: readonly number[], ties: 'all' | 'last' = 'all'): Ring {
    const n = values.length
    if (n === 0) throw new Error('placement: the hash ring has no points')
    const packed = new Float64Array(n)
    for (let i = 0; i < n; i++) {
      const owner = owners[i]!
      if (owner >= OWNER_SPACE) throw new Error('placement: too many servers for a hash ring')
      packed[i] = (values[i]! >>> 0) * OWNER_SPACE + owner
    }
    packed.sort()
    const points = new Uint32Array(n)
    const ownerArr = new Uint32Array(n)
    let k = 0
    for (let i = 0; i < n; i++) {
      const p = packed[i]!
      const v = Math.floor(p / OWNER_SPACE)
      if (ties === 'last' && k > 0 && points[k - 1] === v) k--
      points[k] = v
      ownerArr[k] = p - v * OWNER_SPACE
      k++
    }
    return k === n ? new Ring(points, ownerArr) : new Ring(points.slice(0, k), ownerArr.slice(0, k))
  }

  /** Index of the first point >= h (h a u32), or 0 when h is above every point. */
  lookup(h: number): number {
    const points = this.points
    const b = h >>> this.shift
    let lo = this.index[b]!
    let hi = this.index[b + 1]!
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (points[mid]! < h) lo = mid + 1
      else hi = mid
    }
    return lo === points.length ? 0 : lo
  }

  /**
   * Dalli's rule: the index of the LAST point <= h, or the last (largest) point when h is below
   * every point.
   */
  lookupFloor(h: number): number {
    const points = this.points
    const b = h >>> this.shift
    let lo = this.index[b]!
    let hi = this.index[b + 1]!
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (points[mid]! <= h) lo = mid + 1
      else hi = mid
    }
    return lo === 0 ? points.length - 1 : lo - 1
  }

  /** Number of distinct servers that own at least one point. */
  distinctOwners(): number {
    return new Set(this.owners).size
  }
}

/** Collects pairs for Ring.build. */
export class RingBuilder {
  private readonly values: number[] = []
  private readonly owners: number[] = []

  add(value: number, owner: number): void {
    this.values.push(value)
    this.owners.push(owner)
  }

  build(ties: 'all' | 'last' = 'all'): Ring {
    return Ring.build(this.values, this.owners, ties)
  }
}

/**
 * A Placement over a ring. `startPoint(key)` gives the ring position the client lands on (a
 * lookup of the key hash, or pecl's bucket table). owner = the server of that point.
 *
 * chain rule (all ring strategies): walk the ring clockwise from the start point, wrapping,
 * collecting distinct servers. A server that owns no point (a tiny weight in a weighted ring)
 * is never reached, so the chain is clamped to the servers that own points.
 */
export class RingPlacement implements Placement {
  readonly servers: readonly PlacementServer[]
  readonly ring: Ring
  private readonly startPoint: (key: Uint8Array) => number
  private readonly single: boolean
  private readonly reachable: number
  private readonly seen: SeenSet

  constructor(servers: readonly PlacementServer[], ring: Ring, startPoint: (key: Uint8Array) => number) {
    this.servers = servers
    this.ring = ring
    this.startPoint = startPoint
    this.single = servers.length === 1
    this.reachable = ring.distinctOwners()
    this.seen = new SeenSet(servers.length)
  }

  owner(key: Uint8Array): number {
    if (this.single) return 0
    return this.ring.owners[this.startPoint(key)]!
  }

  chain(key: Uint8Array, n: number, out?: number[]): number[] {
    // `out` is overwritten in place and cut only when its length changes: truncating an array
    // is a runtime call, and a dump routes every key it lists through here.
    const res = out ?? []
    const want = clampChain(n, this.single ? 1 : this.reachable)
    let k = 0
    if (want > 0 && this.single) res[k++] = 0
    else if (want > 0) {
      const owners = this.ring.owners
      const len = owners.length
      const seen = this.seen
      seen.clear()
      let p = this.startPoint(key)
      for (let steps = 0; steps < len && k < want; steps++) {
        const s = owners[p]!
        if (seen.add(s)) res[k++] = s
        if (++p === len) p = 0
      }
    }
    if (res.length !== k) res.length = k
    return res
  }
}
