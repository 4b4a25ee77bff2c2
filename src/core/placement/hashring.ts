/**
 * npm `memcached` 2.2.2 with hashring 3.2.0 (SPEC §5).
 *
 * Identity: `host` when the port is 11211 (the client passes default port 11211), else
 * `host:port`. vnodes = floor(((w / W) × 40) × n) in double (39 instead of 40 for n = 7, 14,
 * ...); each vnode i gives 4 points md5word(`identity-i`, 0..3). Points sorted ascending, ties in
 * insertion (= server) order. Key: md5word(UTF-8 key, 0), ring lookup. One server takes every key.
 *
 * chain: walk the ring clockwise from the lookup point.
 */

import { checkServers, defaultPortIdentity, totalWeight } from './common.js'
import { md5Word0, md5Words } from './hashes.js'
import { RingBuilder, RingPlacement } from './ring.js'
import { utf8 } from './text.js'
import type { Placement, PlacementServer } from './types.js'

const VNODES = 40

export function hashringPlacement(servers: readonly PlacementServer[]): Placement {
  const list = checkServers('node-memcached-hashring', servers)
  const total = totalWeight(list)
  const b = new RingBuilder()
  const words = new Uint32Array(4)
  list.forEach((s, idx) => {
    const vnodes = Math.floor((s.weight / total) * VNODES * list.length)
    const id = defaultPortIdentity(s)
    for (let i = 0; i < vnodes; i++) {
      md5Words(utf8(`${id}-${i}`), words)
      for (let g = 0; g < 4; g++) b.add(words[g]!, idx)
    }
  })
  const ring = b.build()
  return new RingPlacement(list, ring, (key) => ring.lookup(md5Word0(key)))
}
