/**
 * twemproxy (nutcracker 0.5) configs in and out: a nutcracker.yml pool → a memdrain pool, and a
 * pool → the nutcracker.yml pool (keeping every other key of a template). The rules are twemproxy's
 * own (../shared/placement/SPEC-more-clients.md, "twemproxy: every hash and distribution", read
 * from src/nc_conf.c and src/nc_server.c): defaults fnv1a_64 + ketama; a server is
 * `host:port:weight [name]` parsed from the end; its identity is the name, else `host` on port
 * 11211, else `host:port`; the identities sorted (shorter first, then bytewise) are the server order.
 */

import { parseDocument, isMap, isScalar, isSeq, type Document } from 'yaml'
import { isHashName, type HashName } from '../../placement/registry.js'
import { defaultPortIdentity } from '../../placement/common.js'
import { twemproxyOrder } from '../../placement/twemproxy.js'
import { activeServers, type Pool } from '../model.js'
import { validatePool } from '../validate.js'
import { configError, configUnsupported, pickPoolName, type ImportedPool } from './common.js'

export const TWEMPROXY_HASHES = ['one_at_a_time', 'md5', 'crc16', 'crc32', 'crc32a', 'fnv1_64', 'fnv1a_64', 'fnv1_32', 'fnv1a_32', 'hsieh', 'murmur', 'jenkins'] as const
const DISTRIBUTIONS = ['ketama', 'modula', 'random'] as const
const DEFAULT_HASH = 'fnv1a_64'
const DEFAULT_DISTRIBUTION = 'ketama'

/** Pool keys of twemproxy 0.5 that do not change where a key lives (kept by export --template). */
const RUNTIME_KEYS = new Set([
  'listen', 'timeout', 'backlog', 'client_connections', 'tcpkeepalive', 'preconnect', 'server_connections',
  'server_retry_timeout', 'server_failure_limit', 'redis_auth', 'redis_db',
])

/** The twemproxy strategy name for a hash, a distribution and names (SPEC "Strategy names"). */
export function twemproxyStrategyName(hash: string, distribution: string, named: boolean): string {
  return `twemproxy-${distribution}-${hash.replace(/_/g, '-')}${named ? '-named' : ''}`
}

/** The `hash:` and `distribution:` of a twemproxy strategy; undefined for other strategies. */
export function twemproxySettings(strategy: HashName): { hash: string; distribution: 'ketama' | 'modula'; named: boolean } | undefined {
  const m = /^twemproxy-(ketama|modula)-(.+?)(-named)?$/.exec(strategy)
  if (m === null) return undefined
  return { distribution: m[1] as 'ketama' | 'modula', hash: m[2]!.replace(/-/g, '_'), named: m[3] !== undefined }
}

interface ParsedServer {
  host: string
  port: number
  weight: number
  name?: string
  /** The entry as written. */
  text: string
}

/** `host:port:weight [name]`, parsed from the end as twemproxy's conf_add_server does. */
function parseServerEntry(entry: string, field: string, file: string): ParsedServer {
  const text = entry.trim()
  const space = text.lastIndexOf(' ')
  const name = space >= 0 ? text.slice(space + 1) : undefined
  const rest = (space >= 0 ? text.slice(0, space) : text).trim()
  if (rest.startsWith('/')) {
    throw configUnsupported(file, field, `"${text}" is a unix socket; memdrain moves keys over TCP only`, ['Serve the memcached behind it on a loopback TCP port as well, and list that.'])
  }
  const m = /^(.+):(\d+):(\d+)$/.exec(rest)
  if (m === null) throw configError(file, field, `"${text}" is not "host:port:weight [name]"`)
  const host = m[1]!
  if (host.includes(':')) throw configUnsupported(file, field, `"${text}": IPv6 hosts are not covered (twemproxy 0.5 parses them unreliably)`)
  const port = Number(m[2])
  const weight = Number(m[3])
  if (port < 1 || port > 65535) throw configError(file, field, `"${text}": port ${port} is out of range`)
  if (weight < 1) throw configError(file, field, `"${text}" has a zero weight (twemproxy refuses it too)`)
  return { host, port, weight, text, ...(name !== undefined && name !== '' ? { name } : {}) }
}

/** Reads one pool of a nutcracker.yml (`poolName`, or the only pool) as a memdrain pool. */
export function importTwemproxy(text: string, file: string, poolName?: string): ImportedPool {
  const doc = parseDocument(text)
  if (doc.errors.length > 0) throw configError(file, '(document)', `is not valid YAML: ${doc.errors[0]!.message.split('\n')[0]}`)
  const root: unknown = doc.toJS()
  if (typeof root !== 'object' || root === null || Array.isArray(root)) throw configError(file, '(document)', 'must map pool names to pools, as nutcracker.yml does')
  const pools = root as Record<string, unknown>
  const name = pickPoolName(Object.keys(pools), poolName, file)
  const pool = pools[name]
  if (typeof pool !== 'object' || pool === null || Array.isArray(pool)) throw configError(file, name, 'must be a map of settings')
  const settings = pool as Record<string, unknown>
  const notes: string[] = []
  const runtime: string[] = []

  for (const [key, value] of Object.entries(settings)) {
    if (key === 'hash' || key === 'distribution' || key === 'servers') continue
    if (key === 'redis') {
      if (value === true) throw configUnsupported(file, `${name}.redis`, 'is true: a Redis pool, and memdrain moves memcached keys')
      continue
    }
    if (key === 'hash_tag') {
      throw configUnsupported(file, `${name}.hash_tag`, `is ${JSON.stringify(value)}: twemproxy then hashes only the tagged part of each key, and no memdrain strategy does`, [
        'Remove hash_tag from the pool, or move keys with a strategy that hashes the same bytes (none exists yet).',
      ])
    }
    if (key === 'auto_eject_hosts') {
      if (value === true) notes.push(`${name}.auto_eject_hosts is true: twemproxy takes a failing server out of its ring at run time (keys then go elsewhere); memdrain places keys on every active server, so keep the servers up while keys move`)
      else runtime.push(key)
      continue
    }
    if (RUNTIME_KEYS.has(key)) runtime.push(key)
    else notes.push(`${name}.${key}: not a twemproxy 0.5 setting; ignored`)
  }
  if (runtime.length > 0) notes.push(`not in the pool file (no bearing on placement; \`pool export --to twemproxy\` keeps them from the original file): ${runtime.join(', ')}`)

  const hash = settings.hash ?? DEFAULT_HASH
  const distribution = settings.distribution ?? DEFAULT_DISTRIBUTION
  if (typeof hash !== 'string' || !(TWEMPROXY_HASHES as readonly string[]).includes(hash)) {
    throw configError(file, `${name}.hash`, `${JSON.stringify(hash)} is not a twemproxy hash (one of ${TWEMPROXY_HASHES.join(', ')})`)
  }
  if (typeof distribution !== 'string' || !(DISTRIBUTIONS as readonly string[]).includes(distribution)) {
    throw configError(file, `${name}.distribution`, `${JSON.stringify(distribution)} is not a twemproxy distribution (one of ${DISTRIBUTIONS.join(', ')})`)
  }
  if (distribution === 'random') {
    throw configUnsupported(
      file,
      `${name}.distribution`,
      'is random: twemproxy then sends every request (sets and gets alike) to a server picked by random(), seeded with the second the proxy started, so no key has an owner to move it to',
      ['Switch the pool to ketama (the default) first: that change alone moves most keys, so expect misses while the cache refills.'],
    )
  }
  if (settings.hash === undefined || settings.distribution === undefined) {
    notes.push(`${name}: no ${settings.hash === undefined ? '`hash:`' : ''}${settings.hash === undefined && settings.distribution === undefined ? ' or ' : ''}${settings.distribution === undefined ? '`distribution:`' : ''} line: twemproxy's defaults apply (hash ${hash}, distribution ${distribution})`)
  }

  if (!Array.isArray(settings.servers) || settings.servers.length === 0) throw configError(file, `${name}.servers`, 'must be a non-empty list of "host:port:weight [name]"')
  const parsed = settings.servers.map((entry: unknown, i: number) => {
    if (typeof entry !== 'string') throw configError(file, `${name}.servers[${i}]`, 'must be a string "host:port:weight [name]"')
    return parseServerEntry(entry, `${name}.servers[${i}]`, file)
  })
  const named = parsed.some((s) => s.name !== undefined)
  const strategy = twemproxyStrategyName(hash, distribution, named)
  if (!isHashName(strategy)) {
    throw configUnsupported(file, `${name}.hash`, `not supported yet: twemproxy ${distribution} + ${hash}${named ? ' with server names' : ''} (strategy ${strategy})`, [
      'Run `memdrain hashes` to see the twemproxy strategies this version reproduces.',
    ])
  }
  // In a pool where some servers have names, an unnamed one's identity is host[:port]: giving it
  // that as its name keeps its identity and lets the whole pool use the `-named` strategy.
  const servers = parsed.map((s) => {
    const address = `${s.host}:${s.port}`
    const identityName = named ? (s.name ?? defaultPortIdentity({ address, host: s.host, port: s.port, weight: s.weight })) : undefined
    return { address, host: s.host, port: s.port, weight: s.weight, ...(identityName !== undefined ? { name: identityName } : {}) }
  })
  let order: number[]
  try {
    order = twemproxyOrder(strategy, servers, named).order
  } catch (err) {
    throw configError(file, `${name}.servers`, (err as Error).message.replace(/^placement [^:]+: /, ''))
  }
  const docPool = {
    hash: strategy,
    servers: order.map((i) => {
      const s = servers[i]!
      return { address: s.address, ...(s.weight !== 1 ? { weight: s.weight } : {}), ...(s.name !== undefined ? { name: s.name } : {}) }
    }),
    origin: { format: 'twemproxy', file, pool: name },
  }
  if (order.some((i, k) => i !== k)) notes.push(`${name}.servers: listed in twemproxy's server order (identities sorted shorter first, then bytewise), not the file's`)
  return { pool: validatePool(docPool, file), poolName: name, notes }
}

/** One `servers:` entry for a pool server. The name is left out when it is the server's default identity. */
function serverEntry(s: { host: string; port: number; weight: number; address: string; name?: string | undefined }, named: boolean): string {
  const base = `${s.host}:${s.port}:${s.weight}`
  if (!named || s.name === undefined || s.name === defaultPortIdentity(s)) return base
  return `${base} ${s.name}`
}

/**
 * The pool as a nutcracker.yml pool. With a template (the original file), only that pool's
 * `servers:` (and `hash:`/`distribution:` when the pool's strategy differs from the file's) change;
 * every other key, pool and comment stays.
 */
export function exportTwemproxy(pool: Pool, opts: { poolName: string; template?: { text: string; file: string } | undefined }): string {
  const settings = twemproxySettings(pool.hash)
  if (settings === undefined) {
    throw configUnsupported('pool', 'hash', `${pool.hash} is not a twemproxy strategy: twemproxy could not place keys as the applications do`, ['Export to `servers` or to the format of the client the pool describes.'])
  }
  if (pool.replicas !== 1) throw configUnsupported('pool', 'replicas', `is ${pool.replicas}: twemproxy keeps one copy of each key`)
  const entries = activeServers(pool).map((s) => serverEntry(s, settings.named))
  if (opts.template === undefined) {
    const doc = parseDocument('{}') as Document
    doc.set(opts.poolName, doc.createNode({ hash: settings.hash, distribution: settings.distribution, servers: entries }))
    return doc.toString()
  }
  const { text, file } = opts.template
  const doc = parseDocument(text)
  if (doc.errors.length > 0) throw configError(file, '(document)', `is not valid YAML: ${doc.errors[0]!.message.split('\n')[0]}`)
  const node = doc.get(opts.poolName, true)
  if (!isMap(node)) throw configError(file, opts.poolName, `no such pool in the template (pools: ${isMap(doc.contents) ? doc.contents.items.map((p) => String(p.key)).join(', ') : 'none'})`)
  const effective = (key: string, fallback: string): unknown => node.get(key) ?? fallback
  if (effective('hash', DEFAULT_HASH) !== settings.hash) node.set('hash', settings.hash)
  if (effective('distribution', DEFAULT_DISTRIBUTION) !== settings.distribution) node.set('distribution', settings.distribution)
  const old = node.get('servers', true)
  // twemproxy sorts its servers itself: keep the template's order for the servers it lists (the
  // smallest diff for whoever reviews the deploy), new servers after them.
  const place = new Map<string, number>()
  if (isSeq(old)) {
    old.items.forEach((item, i) => {
      const m = /^(.+):(\d+):\d+/.exec(String(isScalar(item) ? item.value : item).trim())
      if (m !== null) place.set(`${m[1]}:${m[2]}`, i)
    })
  }
  const active = activeServers(pool)
  const rank = (i: number): number => place.get(`${active[i]!.host}:${active[i]!.port}`) ?? 1e9 + i
  const ordered = active.map((_, i) => i).sort((a, b) => rank(a) - rank(b)).map((i) => entries[i]!)
  const seq = doc.createNode(ordered)
  // Keep the list's style (block or flow) as the template wrote it.
  if (isSeq(old) && isSeq(seq)) seq.flow = old.flow ?? false
  node.set('servers', seq)
  return doc.toString()
}
