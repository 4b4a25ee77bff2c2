import { placementFor } from '../placement/registry.js'
import type { Placement } from '../placement/types.js'
import { activeServers, type Pool, type PoolServer } from './model.js'

/**
 * The pool's placement over the servers that own keys (its active ones, in file order): what a
 * pool-aware client, or a static client configured with exactly those servers, computes.
 */
export interface PoolPlacement {
  readonly servers: readonly PoolServer[]
  readonly placement: Placement
  readonly replicas: number
}

export function poolPlacement(pool: Pool, servers: readonly PoolServer[] = activeServers(pool)): PoolPlacement {
  return { servers, placement: placementFor(pool.hash, servers), replicas: Math.min(pool.replicas, servers.length) }
}

export interface KeyLocation {
  key: string
  server: string
  chain: string[]
}

export function locateKey(pp: PoolPlacement, key: string, scratch: number[] = []): KeyLocation {
  const bytes = Buffer.from(key, 'utf8')
  const chain = pp.placement.chain(bytes, pp.replicas, scratch).map((i) => pp.servers[i]!.address)
  return { key, server: pp.servers[pp.placement.owner(bytes)]!.address, chain }
}

export interface ServerShare {
  /** Share of the keys whose chain includes the server (with replicas n, the shares add up to n). */
  keys: number
  /** Share of the keys the server owns (first in the chain): the shares add up to 1. */
  primary: number
  /** Share of all key copies held by the server: keys / n, the shares add up to 1. */
  copies: number
}

/**
 * Each server's share of the key space (0..1), estimated by placing `samples` synthetic keys:
 * exact enough to show an operator how uneven a pool is, and identical for every strategy.
 */
export function estimateShares(pp: PoolPlacement, samples = 50_000): Map<string, ServerShare> {
  const inChain = new Array<number>(pp.servers.length).fill(0)
  const owner = new Array<number>(pp.servers.length).fill(0)
  const key = Buffer.alloc(32)
  const chain: number[] = []
  let copies = 0
  for (let i = 0; i < samples; i++) {
    const len = key.write(`memdrain:share:${i}`, 0, 'latin1')
    const c = pp.placement.chain(key.subarray(0, len), pp.replicas, chain)
    for (const s of c) inChain[s] = (inChain[s] ?? 0) + 1
    if (c[0] !== undefined) owner[c[0]] = (owner[c[0]] ?? 0) + 1
    copies += c.length
  }
  return new Map(pp.servers.map((s, i) => [s.address, { keys: (inChain[i] ?? 0) / samples, primary: (owner[i] ?? 0) / samples, copies: copies > 0 ? (inChain[i] ?? 0) / copies : 0 }]))
}
