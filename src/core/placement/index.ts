/** Key placement: which server a real memcached client sends a key to (see shared/placement/SPEC.md). */

export type { Placement, PlacementServer } from './types.js'
export { fractionalWeights, HASH_INFO, HASH_NAMES, isHashName, isModulo, placementFor, requiredServerField } from './registry.js'
export type { HashInfo, HashName, PlacementKind } from './registry.js'
export {
  crc32,
  fnv1a32Signed,
  fnv1a64LowSigned,
  javaHashCode,
  javaStringHash,
  md5Digest,
  md5Word0,
  md5Words,
  murmur3_32,
  murmur3_32x2,
  oneAtATimeSigned,
} from './hashes.js'
export { Ring, RingPlacement } from './ring.js'
export { SlotPlacement } from './slots.js'
export { RendezvousPlacement } from './pymemcache.js'
export { ketamaPointsPerServer } from './libmemcached.js'
