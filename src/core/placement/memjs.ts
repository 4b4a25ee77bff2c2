/**
 * memjs 1.3.2 default `getServer` (SPEC §1): Java String.hashCode over the key's UTF-16 code
 * units, Math.abs (so -2^31 stays 2^31), mod n. Host, port and weight play no part; only the
 * count and order of the servers matter.
 *
 * chain: modulo rule, the owner i, then (i+1) mod n, (i+2) mod n, ...
 */

import { checkServers } from './common.js'
import { identitySlots, SlotPlacement } from './slots.js'
import { CodePointBuffer } from './text.js'
import type { Placement, PlacementServer } from './types.js'

/** Java hashCode of the UTF-16 string whose UTF-8 bytes are `key` (astral characters count as two surrogates). */
export function memjsHash(key: Uint8Array, cps: CodePointBuffer): number {
  let h = 0
  let ascii = true
  for (let i = 0; i < key.length; i++) {
    const b = key[i]!
    if (b >= 0x80) {
      ascii = false
      break
    }
    h = (Math.imul(31, h) + b) | 0
  }
  if (!ascii) {
    const n = cps.decode(key)
    const buf = cps.buf
    h = 0
    for (let i = 0; i < n; i++) {
      const cp = buf[i]!
      if (cp > 0xffff) {
        const v = cp - 0x10000
        h = (Math.imul(31, h) + (0xd800 | (v >>> 10))) | 0
        h = (Math.imul(31, h) + (0xdc00 | (v & 0x3ff))) | 0
      } else {
        h = (Math.imul(31, h) + cp) | 0
      }
    }
  }
  return Math.abs(h)
}

export function memjsPlacement(servers: readonly PlacementServer[]): Placement {
  const list = checkServers('memjs', servers)
  const n = list.length
  const cps = new CodePointBuffer()
  return new SlotPlacement(list, identitySlots(n), (key) => memjsHash(key, cps) % n)
}
