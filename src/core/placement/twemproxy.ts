/**
 * twemproxy / nutcracker 0.5.0 (SPEC §6).
 *
 * Server name: the configured `name` (the `-named` strategies, which require one), else `host`
 * when the port is 11211, else `host:port`. twemproxy sorts the servers by name (shorter first,
 * then bytewise) and rejects duplicate names; that sorted order is its server order. An empty
 * key hashes to 0; one server takes every key.
 *
 * H is the configured `hash:` (one of twelve, hashkit.ts; the default is fnv1a_64).
 * ketama: the weighted md5 ring of libmemcached over `name-j` (the points are always md5, whatever
 *   `hash:` says), lookup of H(key). chain: walk the ring clockwise from the lookup point.
 *   crc32 is 15 bits, so crc32 + ketama sends every key to the owner of the smallest point: that
 *   is what the proxy does.
 * modula: slots = the sorted servers, each repeated weight times; owner = slots[H(key) mod Σw].
 *   chain: the owner, then the next distinct servers of the slot list (sorted order), wrapping.
 * random cannot be reproduced (the proxy picks a server per request from srandom(start time)).
 */

import { checkServers, defaultPortIdentity } from './common.js'
import { TWEMPROXY_HASH_FN, type TwemproxyHash } from './hashkit.js'
import { ketamaRing } from './libmemcached.js'
import { RingPlacement } from './ring.js'
import { SlotPlacement, weightedSlots } from './slots.js'
import { utf8 } from './text.js'
import type { Placement, PlacementServer } from './types.js'

export interface TwemproxyOptions {
  readonly strategy: string
  readonly distribution: 'ketama' | 'modula'
  /** The `hash:` line of the pool. */
  readonly hash: TwemproxyHash
  /** Use the servers' configured names (the `-named` strategies). */
  readonly named: boolean
}

/** twemproxy's name comparison: shorter first, then bytewise on the UTF-8 bytes. */
function compareNames(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return a.length - b.length
  for (let i = 0; i < a.length; i++) {
    const d = a[i]! - b[i]!
    if (d !== 0) return d
  }
  return 0
}

/** Server names and twemproxy's server order (indexes into `servers`, sorted by name). */
export function twemproxyOrder(
  strategy: string,
  servers: readonly PlacementServer[],
  named: boolean,
): { names: string[]; order: number[] } {
  const names = servers.map((s) => (named ? s.name! : defaultPortIdentity(s)))
  const bytes = names.map(utf8)
  const order = servers.map((_, i) => i).sort((a, b) => compareNames(bytes[a]!, bytes[b]!) || a - b)
  for (let k = 1; k < order.length; k++) {
    const prev = order[k - 1]!
    const cur = order[k]!
    if (compareNames(bytes[prev]!, bytes[cur]!) === 0) {
      throw new Error(
        `placement ${strategy}: servers ${prev} (${servers[prev]!.address}) and ${cur} (${servers[cur]!.address}) have the same name "${names[cur]!}"; twemproxy rejects duplicate server names`,
      )
    }
  }
  return { names, order }
}

export function twemproxyPlacement(servers: readonly PlacementServer[], options: TwemproxyOptions): Placement {
  const list = checkServers(options.strategy, servers, { needNames: options.named })
  const { names, order } = twemproxyOrder(options.strategy, list, options.named)
  const h = TWEMPROXY_HASH_FN[options.hash]
  if (options.distribution === 'modula') {
    const slots = weightedSlots(list, order)
    const len = slots.length
    return new SlotPlacement(list, slots, (key) => (key.length === 0 ? 0 : h(key) % len))
  }
  const ring = ketamaRing(list, names)
  return new RingPlacement(list, ring, (key) => ring.lookup(key.length === 0 ? 0 : h(key)))
}
