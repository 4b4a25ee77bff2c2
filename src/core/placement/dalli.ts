/**
 * Ruby Dalli 3.0.6 (`Dalli::Ring`, SPEC-more-clients §1).
 *
 * Server name: `host:port`, the port always written (11211 included), IPv6 without brackets.
 * Points per server: floor((n × 160 × weight) / W) in double; point idx = the first 4 bytes of
 * SHA1(`name:idx`) read big-endian. Key: zlib crc32 of the stored key (Dalli hashes exactly what it
 * stores, namespace and its ":md5:" shortening included), then the LAST point <= h, wrapping to the
 * largest point. One server: every key, no hashing.
 *
 * chain: walk the ring upwards from the owner's point, wrapping.
 */

import { createHash } from 'node:crypto'

import { checkServers, totalWeight } from './common.js'
import { crc32 } from './hashes.js'
import { RingBuilder, RingPlacement } from './ring.js'
import type { Placement, PlacementServer } from './types.js'

const POINTS_PER_SERVER = 160

export function dalliPlacement(servers: readonly PlacementServer[]): Placement {
  const list = checkServers('ruby-dalli', servers)
  const total = totalWeight(list)
  const b = new RingBuilder()
  const n = list.length
  list.forEach((s, idx) => {
    const count = Math.floor((n * POINTS_PER_SERVER * s.weight) / total)
    const name = `${s.host}:${s.port}`
    for (let i = 0; i < count; i++) {
      b.add(createHash('sha1').update(`${name}:${i}`).digest().readUInt32BE(0), idx)
    }
  })
  const ring = b.build()
  return new RingPlacement(list, ring, (key) => ring.lookupFloor(crc32(key)))
}
