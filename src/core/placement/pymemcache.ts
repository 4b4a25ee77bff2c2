/**
 * pymemcache 3.5.2 / 4.0.0 `HashClient` with its default `RendezvousHash` (SPEC §4).
 *
 * Node name: `host:port` (the port always written, 11211 included). For each node,
 * score = murmur3_32(node + "-" + K, seed 0) where the bytes are `ord(ch) & 0xFF` for each
 * character (code point) of that Python str. K = the str key itself, or for the `byteskeys`
 * variant `str(bytes)`, i.e. the repr `b'...'`. The highest score wins; on an exact tie the
 * lexicographically larger node name wins. Weights are ignored.
 *
 * chain: the servers by descending score, ties broken as for the owner.
 */

import { chainOut, checkServers, clampChain } from './common.js'
import { murmur3_32 } from './hashes.js'
import { CodePointBuffer, pythonBytesRepr } from './text.js'
import type { Placement, PlacementServer } from './types.js'

export type PymemcacheKeys = 'str' | 'bytes'

/** Python str ordering (by code point). */
function compareCodePoints(a: string, b: string): number {
  const x = [...a]
  const y = [...b]
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const d = x[i]!.codePointAt(0)! - y[i]!.codePointAt(0)!
    if (d !== 0) return d
  }
  return x.length - y.length
}

/** `ord(ch) & 0xFF` for each character of s. */
function lowBytes(s: string): Uint8Array {
  const chars = [...s]
  const out = new Uint8Array(chars.length)
  chars.forEach((ch, i) => {
    out[i] = ch.codePointAt(0)! & 0xff
  })
  return out
}

export class RendezvousPlacement implements Placement {
  readonly servers: readonly PlacementServer[]
  /** Node names, `host:port`. */
  readonly nodes: readonly string[]
  private readonly keys: PymemcacheKeys
  private readonly count: number
  /** Per node: the bytes of `node + "-"`. */
  private readonly prefixes: Uint8Array[]
  /** Per node: its rank in ascending node-name order (a higher rank wins a tie). */
  private readonly rank: Uint32Array
  /** The key bytes go at `keyAt`; node prefixes are copied just before them. */
  private readonly keyAt: number
  private scratch: Uint8Array
  private readonly cps = new CodePointBuffer()
  private readonly scores: Float64Array
  private readonly taken: Uint8Array

  constructor(servers: readonly PlacementServer[], keys: PymemcacheKeys) {
    const list = checkServers(keys === 'bytes' ? 'pymemcache-rendezvous-byteskeys' : 'pymemcache-rendezvous', servers)
    this.servers = list
    this.keys = keys
    this.count = list.length
    this.nodes = list.map((s) => `${s.host}:${s.port}`)
    this.prefixes = this.nodes.map((node) => lowBytes(`${node}-`))
    this.keyAt = Math.max(...this.prefixes.map((p) => p.length))
    const sorted = this.nodes.map((_, i) => i).sort((a, b) => compareCodePoints(this.nodes[a]!, this.nodes[b]!))
    this.rank = new Uint32Array(this.count)
    sorted.forEach((node, r) => {
      // equal names share a rank, so the first of them keeps the win (Python's `>` test)
      const prev = sorted[r - 1]
      this.rank[node] = prev !== undefined && this.nodes[prev] === this.nodes[node] ? this.rank[prev]! : r
    })
    this.scratch = new Uint8Array(this.keyAt + 1024)
    this.scores = new Float64Array(this.count)
    this.taken = new Uint8Array(this.count)
  }

  /** Writes K's bytes at keyAt; returns the end offset. */
  private writeKey(key: Uint8Array): number {
    const at = this.keyAt
    const need = at + (this.keys === 'bytes' ? 4 * key.length + 3 : key.length)
    if (this.scratch.length < need) this.scratch = new Uint8Array(need * 2)
    const buf = this.scratch
    if (this.keys === 'bytes') return pythonBytesRepr(key, buf, at)
    let ascii = true
    for (let i = 0; i < key.length; i++) {
      const b = key[i]!
      if (b >= 0x80) {
        ascii = false
        break
      }
      buf[at + i] = b
    }
    if (ascii) return at + key.length
    const n = this.cps.decode(key)
    const cps = this.cps.buf
    for (let i = 0; i < n; i++) buf[at + i] = cps[i]! & 0xff
    return at + n
  }

  private score(i: number, end: number): number {
    const prefix = this.prefixes[i]!
    const start = this.keyAt - prefix.length
    this.scratch.set(prefix, start)
    return murmur3_32(this.scratch, start, end)
  }

  owner(key: Uint8Array): number {
    if (this.count === 1) return 0
    const end = this.writeKey(key)
    let best = 0
    let bestScore = this.score(0, end)
    for (let i = 1; i < this.count; i++) {
      const s = this.score(i, end)
      if (s > bestScore || (s === bestScore && this.rank[i]! > this.rank[best]!)) {
        best = i
        bestScore = s
      }
    }
    return best
  }

  chain(key: Uint8Array, n: number, out?: number[]): number[] {
    const res = chainOut(out)
    const want = clampChain(n, this.count)
    if (want === 0) return res
    if (this.count === 1) {
      res.push(0)
      return res
    }
    const end = this.writeKey(key)
    const scores = this.scores
    const taken = this.taken
    for (let i = 0; i < this.count; i++) {
      scores[i] = this.score(i, end)
      taken[i] = 0
    }
    while (res.length < want) {
      let best = -1
      for (let i = 0; i < this.count; i++) {
        if (taken[i] === 1) continue
        if (best < 0 || scores[i]! > scores[best]! || (scores[i] === scores[best] && this.rank[i]! > this.rank[best]!)) best = i
      }
      taken[best] = 1
      res.push(best)
    }
    return res
  }
}

export function pymemcachePlacement(servers: readonly PlacementServer[], keys: PymemcacheKeys): Placement {
  return new RendezvousPlacement(servers, keys)
}
