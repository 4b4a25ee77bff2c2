/**
 * memjs 1.3.2 default `getServer` (SPEC §1): Java String.hashCode over the key's UTF-16 code
 * units, Math.abs (so -2^31 stays 2^31), mod n. Host, port and weight play no part; only the
 * count and order of the servers matter.
 *
 * chain: modulo rule, the owner i, then (i+1) mod n, (i+2) mod n, ...
 */

import { checkServers } from './common.js'
import { identitySlots, SlotPlacement } from './slots.js'
import { javaStringHash } from './hashes.js'
import { CodePointBuffer } from './text.js'
import type { Placement, PlacementServer } from './types.js'

export function memjsPlacement(servers: readonly PlacementServer[]): Placement {
  const list = checkServers('memjs', servers)
  const n = list.length
  const cps = new CodePointBuffer()
  return new SlotPlacement(list, identitySlots(n), (key) => Math.abs(javaStringHash(key, cps)) % n)
}
