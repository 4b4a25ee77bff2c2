/** Shared helpers of the placement strategies: validation, identity strings, chain plumbing. */

import type { PlacementServer } from './types.js'

export interface CheckOptions {
  /** The strategy hashes twemproxy server names: every server needs a non-empty `name`. */
  readonly needNames?: boolean
  /**
   * `integer` (the default): weights are positive integers. `fraction`: mcrouter's weights, a
   * number from 0 to 1 (0 is allowed: such a server still gets the keys all of whose tries fail).
   */
  readonly weights?: 'integer' | 'fraction'
}

/**
 * Validates a server list for `strategy` and returns a frozen copy. Throws a clear Error for an
 * empty list, a weight that is not a positive integer (or, with `weights: 'fraction'`, not in [0, 1]), or (with `needNames`) a missing name.
 */
export function checkServers(
  strategy: string,
  servers: readonly PlacementServer[],
  options: CheckOptions = {},
): readonly PlacementServer[] {
  if (servers.length === 0) throw new Error(`placement ${strategy}: the server list is empty`)
  servers.forEach((s, i) => {
    if (options.weights === 'fraction') {
      if (typeof s.weight !== 'number' || !(s.weight >= 0 && s.weight <= 1)) {
        throw new Error(
          `placement ${strategy}: server ${i} (${s.address}) has weight ${String(s.weight)}; weights must be numbers from 0 to 1`,
        )
      }
    } else if (!Number.isSafeInteger(s.weight) || s.weight < 1) {
      throw new Error(
        `placement ${strategy}: server ${i} (${s.address}) has weight ${String(s.weight)}; weights must be positive integers`,
      )
    }
    if (options.needNames === true && (typeof s.name !== 'string' || s.name.length === 0)) {
      throw new Error(
        `placement ${strategy}: server ${i} (${s.address}) has no name; this strategy hashes twemproxy server names, so every server needs one`,
      )
    }
  })
  return Object.freeze([...servers])
}

/**
 * The identity string of libmemcached, twemproxy (without names) and hashring: the host alone
 * when the port is memcached's default 11211, otherwise `host:port`.
 */
export function defaultPortIdentity(s: PlacementServer): string {
  return s.port === 11211 ? s.host : `${s.host}:${s.port}`
}

/** The sum of the servers' weights (W in the weighted rings' formulas). */
export function totalWeight(servers: readonly PlacementServer[]): number {
  let total = 0
  for (const s of servers) total += s.weight
  return total
}

/** `n` clamped to 0..count (NaN and negatives give 0, fractions round down). */
export function clampChain(n: number, count: number): number {
  if (!(n > 0)) return 0
  return n >= count ? count : Math.floor(n)
}

/** Prepares the chain result array: `out` cleared when given, a new array otherwise. */
export function chainOut(out: number[] | undefined): number[] {
  if (out === undefined) return []
  out.length = 0
  return out
}

/** A reusable "already taken" set over server indexes (generation stamps, no per-call allocation). */
export class SeenSet {
  private readonly stamps: Uint32Array
  private gen = 0

  constructor(size: number) {
    this.stamps = new Uint32Array(size)
  }

  /** Empties the set. */
  clear(): void {
    if (++this.gen === 0xffffffff) {
      this.stamps.fill(0)
      this.gen = 1
    }
  }

  /** Adds i; false when it was already present. */
  add(i: number): boolean {
    if (this.stamps[i] === this.gen) return false
    this.stamps[i] = this.gen
    return true
  }
}
