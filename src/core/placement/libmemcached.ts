/**
 * libmemcached-awesome 1.1.4, as used by php-memcached 3.2.0 and pylibmc 1.6.3 (SPEC §3).
 *
 * One server: every key goes to it. Key hash H: one_at_a_time with signed bytes (default) or
 * md5word(key, 0). Ring identity of server s, point j: `host-j` when the port is 11211, else
 * `host:port-j`. Points are sorted by (value, server index).
 *
 * modula: owner = H(key) mod n; weights ignored. chain: owner i, then (i+1) mod n, ...
 * consistent: 100 points per server, point j = H(identity(s, j)), lookup of H(key). As soon as
 *   any server has weight > 1, libmemcached silently switches to the weighted md5 ring (below)
 *   and keeps H for the key.
 * ketama-weighted (OPT_LIBKETAMA_COMPATIBLE / ketama_weighted): 4 × floor(x) points per server,
 *   x = ((pct × 160) / 4) × n in float32 (pct = w / W), 4 points md5word(identity(s, j), 0..3)
 *   per j; lookup of H(key) (md5 for these configurations).
 * chain for both rings: walk the ring clockwise from the lookup point.
 */

import { checkServers, defaultPortIdentity, totalWeight } from './common.js'
import { md5Word0, md5Words, oneAtATimeSigned } from './hashes.js'
import { Ring, RingBuilder, RingPlacement } from './ring.js'
import { identitySlots, SlotPlacement } from './slots.js'
import { utf8 } from './text.js'
import type { Placement, PlacementServer } from './types.js'

export type LibmemcachedHash = 'one_at_a_time' | 'md5'
export type LibmemcachedDistribution = 'modula' | 'consistent' | 'ketama-weighted'

export interface LibmemcachedOptions {
  /** Strategy name, for error messages. */
  readonly strategy: string
  readonly distribution: LibmemcachedDistribution
  /** OPT_HASH: the key hash, and the point hash of the non-weighted consistent ring. */
  readonly hash: LibmemcachedHash
}

const CONSISTENT_POINTS = 100
const KETAMA_POINTS = 160

function keyHash(hash: LibmemcachedHash): (data: Uint8Array) => number {
  return hash === 'md5' ? (d) => md5Word0(d) : (d) => oneAtATimeSigned(d)
}

/**
 * Points per server of the weighted ketama ring (libmemcached and twemproxy):
 * 4 × floor(float32(((float32(w / W) × 160) / 4) × n) + 1e-10), every step rounded to float32.
 * With equal weights this is 160, but 156 for n = 25, 47, 50, ...
 */
export function ketamaPointsPerServer(weight: number, totalWeight: number, count: number): number {
  const f = Math.fround
  const pct = f(f(weight) / f(totalWeight))
  const x = f(f(f(pct * KETAMA_POINTS) / 4) * f(count))
  return Math.floor(f(x + 1e-10)) * 4
}

/** The weighted md5 ring over the given identity strings (libmemcached ketama and twemproxy ketama). */
export function ketamaRing(
  servers: readonly PlacementServer[],
  identities: readonly string[],
  owners: readonly number[] = servers.map((_, i) => i),
): Ring {
  const total = totalWeight(servers)
  const b = new RingBuilder()
  const words = new Uint32Array(4)
  servers.forEach((s, i) => {
    const hashes = ketamaPointsPerServer(s.weight, total, servers.length) / 4
    for (let j = 0; j < hashes; j++) {
      md5Words(utf8(`${identities[i]!}-${j}`), words)
      for (let g = 0; g < 4; g++) b.add(words[g]!, owners[i]!)
    }
  })
  return b.build()
}

export function libmemcachedPlacement(servers: readonly PlacementServer[], options: LibmemcachedOptions): Placement {
  const list = checkServers(options.strategy, servers)
  const h = keyHash(options.hash)
  if (options.distribution === 'modula') {
    const n = list.length
    return new SlotPlacement(list, identitySlots(n), (key) => h(key) % n)
  }
  const identities = list.map(defaultPortIdentity)
  const weighted = options.distribution === 'ketama-weighted' || list.some((s) => s.weight > 1)
  let ring: Ring
  if (weighted) {
    ring = ketamaRing(list, identities)
  } else {
    const b = new RingBuilder()
    list.forEach((_, i) => {
      for (let j = 0; j < CONSISTENT_POINTS; j++) b.add(h(utf8(`${identities[i]!}-${j}`)), i)
    })
    ring = b.build()
  }
  return new RingPlacement(list, ring, (key) => ring.lookup(h(key)))
}
