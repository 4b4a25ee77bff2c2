/**
 * Modulo and bucket-list placement (memjs, pecl memcache standard, libmemcached modula,
 * twemproxy modula): the key picks a slot in a fixed list of server indexes.
 */

import { chainOut, clampChain, SeenSet } from './common.js'
import type { Placement, PlacementServer } from './types.js'

/**
 * `slots[slotOf(key)]` owns the key. `slots` holds indexes into `servers` (configuration order);
 * a server may fill several consecutive slots (weights) and the list may be in another order
 * (twemproxy's sort by name).
 *
 * chain rule: the owner, then the next distinct servers in the slot list after the owner's slot
 * ((i+1) mod len, (i+2) mod len, ...). With one slot per server this is (i+1) mod n, ...
 */
export class SlotPlacement implements Placement {
  readonly servers: readonly PlacementServer[]
  readonly slots: Uint32Array
  private readonly slotOf: (key: Uint8Array) => number
  private readonly single: boolean
  private readonly reachable: number
  private readonly seen: SeenSet

  constructor(servers: readonly PlacementServer[], slots: Uint32Array, slotOf: (key: Uint8Array) => number) {
    if (slots.length === 0) throw new Error('placement: empty slot list')
    this.servers = servers
    this.slots = slots
    this.slotOf = slotOf
    this.single = servers.length === 1
    this.reachable = new Set(slots).size
    this.seen = new SeenSet(servers.length)
  }

  owner(key: Uint8Array): number {
    if (this.single) return 0
    return this.slots[this.slotOf(key)]!
  }

  chain(key: Uint8Array, n: number, out?: number[]): number[] {
    const res = chainOut(out)
    const want = clampChain(n, this.single ? 1 : this.reachable)
    if (want === 0) return res
    if (this.single) {
      res.push(0)
      return res
    }
    const slots = this.slots
    const len = slots.length
    const seen = this.seen
    seen.clear()
    let p = this.slotOf(key)
    for (let steps = 0; steps < len && res.length < want; steps++) {
      const s = slots[p]!
      if (seen.add(s)) res.push(s)
      if (++p === len) p = 0
    }
    return res
  }
}

/** Slot list with each server once, in configuration order. */
export function identitySlots(count: number): Uint32Array {
  const slots = new Uint32Array(count)
  for (let i = 0; i < count; i++) slots[i] = i
  return slots
}

/** Slot list with server i repeated weight(i) times in a row, in the given order of indexes. */
export function weightedSlots(servers: readonly PlacementServer[], order: readonly number[]): Uint32Array {
  let total = 0
  for (const i of order) total += servers[i]!.weight
  const slots = new Uint32Array(total)
  let k = 0
  for (const i of order) {
    for (let w = servers[i]!.weight; w > 0; w--) slots[k++] = i
  }
  return slots
}
