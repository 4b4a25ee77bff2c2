/**
 * spymemcached 2.12.3 (SPEC-more-clients §3). Key bytes are UTF-8; NATIVE_HASH is Java
 * `String.hashCode` over UTF-16 units taken as an unsigned u32; KETAMA_HASH is md5word(key, 0).
 *
 * native (the default client): NATIVE_HASH(key) mod n; only the order of the servers matters.
 *   chain: the owner i, then (i+1) mod n, ... (the client's own Redistribute order).
 * ketama / ketama-libmemcached: 40 md5 digests per server of `identity-i`, 4 points each (160 at any
 *   n); weighted: the float32 points formula of libmemcached; consistent-native (a CONSISTENT
 *   locator left on NATIVE_HASH): 160 points NATIVE_HASH(`identity-i`). Key: the same hash as the
 *   points, first point >= h (TreeMap ceiling), wrapping. Equal points: the later server wins.
 *   chain: walk the ring clockwise from the owner's point.
 *
 * Ring identity (KetamaNodeKeyFormatter), computed from the address the JVM saw at its start:
 *   SPYMEMCACHED (default): `InetSocketAddress.toString()` without its leading "/": `ip:port` for
 *     an IP literal, `name/ip:port` for a host name (so the resolved address is part of it), IPv6
 *     as `[0:0:0:0:0:0:0:1]:port`. The port is always written.
 *   LIBMEMCACHED: `getHostName()` (a reverse lookup for an IP literal: the pool's `hostname`), then
 *     `:port` unless the port is 11211.
 */

import { isIPv4, isIPv6 } from 'node:net'

import { checkServers, totalWeight } from './common.js'
import { javaStringHash, md5Word0, md5Words } from './hashes.js'
import { ketamaPointsPerServer } from './libmemcached.js'
import { RingBuilder, RingPlacement } from './ring.js'
import { identitySlots, SlotPlacement } from './slots.js'
import { CodePointBuffer, utf8 } from './text.js'
import type { Placement, PlacementServer } from './types.js'

export type SpymemcachedRing = 'ketama' | 'ketama-libmemcached' | 'ketama-weighted' | 'consistent-native'

const KETAMA_REPETITIONS = 160

/** Java's `Inet6Address.getHostAddress()`: eight lowercase hex groups, no "::" compression. */
export function javaIPv6(host: string): string {
  const [head = '', tail] = host.split('::') as [string, string | undefined]
  const groups = (part: string): string[] => {
    if (part === '') return []
    const out: string[] = []
    for (const g of part.split(':')) {
      if (g.includes('.')) {
        const [a, b, c, d] = g.split('.').map(Number) as [number, number, number, number]
        out.push(((a << 8) | b).toString(16), ((c << 8) | d).toString(16))
      } else {
        out.push(parseInt(g, 16).toString(16))
      }
    }
    return out
  }
  const h = groups(head)
  const t = tail === undefined ? [] : groups(tail)
  const fill = tail === undefined ? [] : new Array<string>(8 - h.length - t.length).fill('0')
  return [...h, ...fill, ...t].join(':')
}

/** `InetAddress.getHostAddress()` of an IP literal (an IPv4-mapped IPv6 address becomes IPv4, as in Java). */
function javaHostAddress(ip: string): { text: string; v6: boolean } {
  if (isIPv4(ip)) return { text: ip, v6: false }
  const v6 = javaIPv6(ip)
  const mapped = /^0:0:0:0:0:ffff:([0-9a-f]+):([0-9a-f]+)$/.exec(v6)
  if (mapped !== null) {
    const hi = parseInt(mapped[1]!, 16)
    const lo = parseInt(mapped[2]!, 16)
    return { text: `${hi >>> 8}.${hi & 255}.${lo >>> 8}.${lo & 255}`, v6: false }
  }
  return { text: v6, v6: true }
}

/** The SPYMEMCACHED-format ring identity of a server (`InetSocketAddress.toString()` minus the leading "/"). */
export function spymemcachedIdentity(strategy: string, s: PlacementServer, i: number): string {
  const literal = isIPv4(s.host) || isIPv6(s.host)
  const ip = literal ? s.host : s.resolved
  if (ip === undefined || !(isIPv4(ip) || isIPv6(ip))) {
    throw new Error(
      `placement ${strategy}: server ${i} (${s.address}) is a host name, and spymemcached hashes the address it resolved to at the application's start ("name/ip:port"); give it as "resolved" (an IP address)`,
    )
  }
  const addr = javaHostAddress(ip)
  const text = addr.v6 ? `[${addr.text}]` : addr.text
  return `${literal ? '' : `${s.host}/`}${text}:${s.port}`
}

/** The LIBMEMCACHED-format ring identity: getHostName(), then ":port" unless 11211. */
export function spymemcachedLibmemcachedIdentity(strategy: string, s: PlacementServer, i: number): string {
  let host = s.hostname
  if (host === undefined || host === '') {
    if (isIPv4(s.host) || isIPv6(s.host)) {
      throw new Error(
        `placement ${strategy}: server ${i} (${s.address}) is an IP literal, and spymemcached's LIBMEMCACHED format hashes its reverse-DNS name (Java getHostName()); give it as "hostname" (e.g. "localhost" for 127.0.0.1 from /etc/hosts, or the IP itself when it has no PTR record)`,
      )
    }
    host = s.host
  }
  return s.port === 11211 ? host : `${host}:${s.port}`
}

/**
 * The per-server pool field a spymemcached ring needs for a server on `host`, if any: `hostname` for
 * an IP literal in the LIBMEMCACHED format (reverse DNS in the application's JVM), `resolved` for a
 * host name in the SPYMEMCACHED format (the address it resolved to).
 */
export function spymemcachedServerField(strategy: string, host: string): 'hostname' | 'resolved' | undefined {
  const literal = isIPv4(host) || isIPv6(host)
  if (strategy === 'spymemcached-ketama-libmemcached') return literal ? 'hostname' : undefined
  if (strategy === 'spymemcached-ketama' || strategy === 'spymemcached-ketama-weighted' || strategy === 'spymemcached-consistent-native') {
    return literal ? undefined : 'resolved'
  }
  return undefined
}

/** Java String.hashCode of a JS string (UTF-16 units), unsigned. */
function nativeHash(s: string): number {
  let h = 0
  for (let i = 0; i < s.length; i++) h = (Math.imul(31, h) + s.charCodeAt(i)) | 0
  return h >>> 0
}

export function spymemcachedNativePlacement(servers: readonly PlacementServer[]): Placement {
  const list = checkServers('spymemcached-native', servers)
  const n = list.length
  const cps = new CodePointBuffer()
  return new SlotPlacement(list, identitySlots(n), (key) => (javaStringHash(key, cps) >>> 0) % n)
}

export function spymemcachedRingPlacement(servers: readonly PlacementServer[], kind: SpymemcachedRing): Placement {
  const strategy = `spymemcached-${kind}`
  const list = checkServers(strategy, servers)
  const ids = list.map((s, i) =>
    kind === 'ketama-libmemcached' ? spymemcachedLibmemcachedIdentity(strategy, s, i) : spymemcachedIdentity(strategy, s, i),
  )
  const b = new RingBuilder()
  if (kind === 'consistent-native') {
    ids.forEach((id, owner) => {
      for (let i = 0; i < KETAMA_REPETITIONS; i++) b.add(nativeHash(`${id}-${i}`), owner)
    })
    const ring = b.build('last')
    const cps = new CodePointBuffer()
    return new RingPlacement(list, ring, (key) => ring.lookup(javaStringHash(key, cps) >>> 0))
  }
  const total = totalWeight(list)
  const words = new Uint32Array(4)
  ids.forEach((id, owner) => {
    const digests =
      kind === 'ketama-weighted' ? ketamaPointsPerServer(list[owner]!.weight, total, list.length) / 4 : KETAMA_REPETITIONS / 4
    for (let i = 0; i < digests; i++) {
      md5Words(utf8(`${id}-${i}`), words)
      for (let g = 0; g < 4; g++) b.add(words[g]!, owner)
    }
  })
  const ring = b.build('last')
  return new RingPlacement(list, ring, (key) => ring.lookup(md5Word0(key)))
}
