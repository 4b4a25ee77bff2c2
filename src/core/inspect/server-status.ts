import { MetaConnection, parseAddress, isServerError, MIN_MEMCACHED_VERSION } from '../protocol/index.js'
import type { PoolServer, ServerState } from '../pool/model.js'

/** What `status` reports for one server: everything an operator checks before moving keys. */
export interface ServerStatus {
  address: string
  name?: string
  state: ServerState
  weight: number
  reachable: boolean
  version?: string
  items?: number
  bytes?: number
  limitBytes?: number
  freeBytes?: number
  evictions?: number
  hitRatio?: number | null
  uptimeSeconds?: number
  itemSizeMax?: number
  dumpsEnabled?: boolean
  crawlerEnabled?: boolean
  /** Share of the pool's keys this server owns under the current placement (0..1), when known. */
  share?: number
  /** With replicas > 1: share of the keys this server owns (first in their chain). */
  primaryShare?: number
  /** With replicas > 1: share of all key copies this server holds. */
  copyShare?: number
  error?: { code: string; message: string }
  warnings: string[]
}

const num = (m: Map<string, string>, k: string): number | undefined => {
  const v = m.get(k)
  if (v === undefined) return undefined
  const n = Number(v)
  return Number.isFinite(n) ? n : undefined
}

export async function probeServer(server: PoolServer, opts: { timeoutMs?: number } = {}): Promise<ServerStatus> {
  const base: ServerStatus = {
    address: server.address,
    ...(server.name === undefined ? {} : { name: server.name }),
    state: server.state,
    weight: server.weight,
    reachable: false,
    warnings: [],
  }
  const timeoutMs = opts.timeoutMs ?? 2000
  let conn: MetaConnection | undefined
  try {
    conn = await MetaConnection.connect(parseAddress(server.address), { connectTimeoutMs: timeoutMs, requestTimeoutMs: timeoutMs })
    base.reachable = true
    base.version = await conn.checkVersion(MIN_MEMCACHED_VERSION)
    const [general, settings] = await Promise.all([conn.stats(), conn.stats('settings')])
    const limit = num(general, 'limit_maxbytes')
    const bytes = num(general, 'bytes')
    const hits = num(general, 'get_hits') ?? 0
    const misses = num(general, 'get_misses') ?? 0
    Object.assign(base, {
      items: num(general, 'curr_items'),
      bytes,
      limitBytes: limit,
      freeBytes: limit !== undefined && bytes !== undefined ? Math.max(0, limit - bytes) : undefined,
      evictions: num(general, 'evictions'),
      hitRatio: hits + misses > 0 ? hits / (hits + misses) : null,
      uptimeSeconds: num(general, 'uptime'),
      itemSizeMax: num(settings, 'item_size_max'),
      dumpsEnabled: settings.get('dump_enabled') !== 'no',
      crawlerEnabled: settings.get('lru_crawler') !== 'no',
    })
    if (base.dumpsEnabled === false) base.warnings.push('key dumps are disabled (memcached -X): memdrain cannot enumerate this server\'s keys')
    if (base.crawlerEnabled === false) base.warnings.push('the LRU crawler is off (-o no_lru_crawler): memdrain cannot enumerate this server\'s keys')
    if ((base.evictions ?? 0) > 0) base.warnings.push(`${base.evictions} evictions since start: the server is short of memory`)
  } catch (err) {
    const code = isServerError(err) ? err.code : 'ERROR'
    base.error = { code, message: (err as Error).message }
    if (code === 'VERSION_TOO_OLD' || code === 'NOT_MEMCACHED') {
      base.warnings.push((err as Error).message)
    } else {
      base.reachable = false
      base.warnings.push(`unreachable: ${(err as Error).message}`)
    }
  } finally {
    await conn?.close().catch(() => undefined)
  }
  return base
}

/** Items a server holds (stats curr_items, including expired ones not yet reclaimed); null when it does not answer. */
export async function itemCount(address: string, timeoutMs = 2000): Promise<number | null> {
  try {
    const conn = await MetaConnection.connect(parseAddress(address), { connectTimeoutMs: timeoutMs, requestTimeoutMs: timeoutMs })
    try {
      const n = Number((await conn.stats()).get('curr_items'))
      return Number.isFinite(n) ? n : null
    } finally {
      await conn.close().catch(() => undefined)
    }
  } catch {
    return null
  }
}
