/**
 * gomemcache (`ServerList.PickServer`, SPEC-more-clients §2): crc32 (IEEE, full u32) of the key's
 * first 256 bytes (the client copies the key into a 256-byte buffer), mod n. Addresses play no
 * part, only the count and order; a server listed twice gets twice the share.
 *
 * chain: the owner i, then (i+1) mod n, ...
 */

import { checkServers } from './common.js'
import { crc32 } from './hashes.js'
import { identitySlots, SlotPlacement } from './slots.js'
import type { Placement, PlacementServer } from './types.js'

const KEY_BUFFER = 256

export function gomemcachePlacement(servers: readonly PlacementServer[]): Placement {
  const list = checkServers('go-gomemcache', servers)
  const n = list.length
  return new SlotPlacement(list, identitySlots(n), (key) => crc32(key, 0, key.length < KEY_BUFFER ? key.length : KEY_BUFFER) % n)
}
