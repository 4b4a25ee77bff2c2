import { setTimeout as sleep } from 'node:timers/promises'
import { formatAddress, type ServerAddress } from './address.js'
import {
  connectionClosed,
  crawlerBusy,
  crawlerDisabled,
  dumpsDisabled,
  excerpt,
  interrupted,
  isServerError,
  protocolError,
  timedOut,
} from './errors.js'
import { uriDecodeInto } from './keys.js'
import { META_CONNECTION_DEFAULTS, MetaConnection } from './connection.js'
import { openSocket, SocketReader, transportSettings } from './transport.js'

/**
 * One item from `lru_crawler metadump`. The reader passes the SAME object for every entry and
 * `key` is a view of a scratch buffer: both are valid only during the `onEntry` call. Copy the key
 * (or write it to the spool) before returning.
 */
export interface DumpEntry {
  /** The key's bytes (URI-decoded from the dump). */
  key: Buffer
  /** Absolute unix expiry time (server clock), -1 for none. */
  exp: number
  /** Last access, absolute unix time (server clock). */
  la: number
  /** CAS as decimal digits (can exceed 2^53). */
  cas: string
  /** Whether the item was ever fetched. */
  fetched: boolean
  /** Slab class. */
  cls: number
  /** Total item size in memory (header + key + value), not the value length. */
  size: number
  /** Client flags; -1 when the server does not print them (1.6.18 does not). */
  flags: number
}

export interface MetadumpOptions {
  onEntry: (entry: DumpEntry) => void
  /**
   * Asked first with each entry's key alone (`entry.key` of the entry to come, the rest of its
   * line not read yet): false skips the line, which is counted in `entries` but never reaches
   * onEntry. A job that takes a small share of what a server lists (warm takes about a third of
   * each peer's keys) does not read the rest of the lines it leaves.
   */
  accept?: (key: Buffer) => boolean
  /** Aborting closes the dump connection and rejects with INTERRUPTED (exit 69). */
  signal?: AbortSignal
  /** Wait between attempts while the crawler is busy. */
  retryDelayMs?: number
  /** Attempts after the first while the crawler is busy, then CRAWLER_BUSY. */
  maxRetries?: number
  connectTimeoutMs?: number
  /** No byte received for this long during a dump → SERVER_TIMEOUT. */
  idleTimeoutMs?: number
  /** Walk to ask for first; `hash` falls back to `all` when the server rejects it. */
  mode?: 'hash' | 'all'
  /**
   * Before each attempt of a `hash` walk, wait (up to this long, ms) while the server's hash
   * table is expanding or about to (curr_items > 1.5 × 2^hash_power_level), then dump anyway.
   * 0 disables the check. Why: on memcached 1.6.18 a hash walk that starts as a hash-table
   * expansion starts can deadlock the server (every worker thread blocked; measured here in ~16%
   * of attempts when the two coincide, never otherwise): the walk holds the table's maintenance
   * lock, which the expansion needs. An LRU walk (`all`) does not take that lock and needs no
   * wait (scripts/probe-expansion-deadlock.ts measures both).
   */
  expansionWaitMs?: number
  /** Called with the walk about to be asked for, before each attempt (a `hash` walk may fall back to `all`). */
  onWalk?: (mode: 'hash' | 'all') => void
}

export const METADUMP_DEFAULTS = {
  retryDelayMs: 1000,
  maxRetries: 60,
  connectTimeoutMs: 3000,
  idleTimeoutMs: 60_000,
  mode: 'hash',
  expansionWaitMs: 30_000,
} as const satisfies Required<Omit<MetadumpOptions, 'onEntry' | 'accept' | 'signal' | 'onWalk'>>

export interface MetadumpResult {
  entries: number
  /** The walk that answered. */
  mode: 'hash' | 'all'
  /** Attempts refused because the crawler was busy. */
  busyRetries: number
  /**
   * True when the dump listed each key at most once: a `hash` walk during which the hash table
   * neither expanded nor was expanding (`stats` just before and just after the walk agree). The
   * usual case: memcached's hash walk holds off expansion and locks each bucket while it lists
   * it, so a key rewritten meanwhile shows once.
   * False (an `all` walk over the LRUs, a table that grew, or no `stats` to tell): a key may
   * come twice, and the caller deduplicates.
   */
  distinctKeys: boolean
}

/** The hash table's size and whether it is being resized, from `stats`. */
interface TableState {
  power: number
  expanding: boolean
}

function tableState(stats: Map<string, string>): TableState | undefined {
  const power = Number(stats.get('hash_power_level'))
  const expanding = stats.get('hash_is_expanding')
  if (!Number.isFinite(power) || expanding === undefined) return undefined
  return { power, expanding: expanding === '1' }
}

/**
 * Lists every item of one server with `lru_crawler metadump hash` (or `all`), on its own
 * connection (a dump occupies it until END), calling `onEntry` synchronously per item. The
 * socket is never paused: a slow reader would stall the server's crawler, so callers spool.
 * A dump is a live walk, not a snapshot: keys may repeat or be missed.
 *
 * Errors: DUMPS_DISABLED (-X), CRAWLER_DISABLED (-o no_lru_crawler), CRAWLER_BUSY after
 * maxRetries, SERVER_UNREACHABLE / SERVER_TIMEOUT, CONNECTION_CLOSED, INTERRUPTED (signal),
 * or whatever onEntry throws (the dump stops).
 */
export async function metadump(addr: ServerAddress, options: MetadumpOptions): Promise<MetadumpResult> {
  const opts: ResolvedOptions = { ...METADUMP_DEFAULTS, ...stripUndefined(options) }
  const server = formatAddress(addr)
  let mode: 'hash' | 'all' = opts.mode
  let busyRetries = 0
  for (;;) {
    if (opts.signal?.aborted) throw interrupted(server, opts.signal.reason)
    const before = opts.expansionWaitMs > 0 && mode === 'hash' ? await waitForStableHashTable(addr, server, opts) : undefined
    opts.onWalk?.(mode)
    const outcome = await dumpOnce(addr, server, mode, opts)
    if (outcome.kind === 'done') {
      let distinctKeys = false
      if (mode === 'hash' && before !== undefined && !before.expanding) {
        const after = await readTableState(addr, opts).catch(() => undefined)
        distinctKeys = after !== undefined && !after.expanding && after.power === before.power
      }
      return { entries: outcome.entries, mode, busyRetries, distinctKeys }
    }
    if (outcome.kind === 'rejected') {
      if (mode === 'hash') {
        mode = 'all'
        continue
      }
      throw protocolError(server, `${excerpt(outcome.line)} in reply to "lru_crawler metadump all"`)
    }
    if (busyRetries >= opts.maxRetries) throw crawlerBusy(server, busyRetries + 1, outcome.line)
    busyRetries++
    try {
      await sleep(opts.retryDelayMs, undefined, opts.signal === undefined ? undefined : { signal: opts.signal })
    } catch (err) {
      throw interrupted(server, opts.signal?.reason ?? err)
    }
  }
}

/**
 * Waits while `stats` shows the hash table expanding or due to expand at the next clock tick
 * (memcached expands when curr_items > 1.5 × 2^hash_power_level). Gives up waiting after
 * expansionWaitMs and lets the dump go ahead; a server that cannot answer `stats` fails here
 * as it would in the dump (unreachable, timeout).
 */
async function waitForStableHashTable(addr: ServerAddress, server: string, opts: ResolvedOptions): Promise<TableState | undefined> {
  const deadline = Date.now() + opts.expansionWaitMs
  // memcached starts a due expansion at its next 1-second clock tick; if none starts within 3 s
  // (hash table at its maximum size), stop waiting for it.
  const dueDeadline = Date.now() + Math.min(3000, opts.expansionWaitMs)
  const requestTimeoutMs = Math.min(opts.idleTimeoutMs, META_CONNECTION_DEFAULTS.requestTimeoutMs)
  const conn = await MetaConnection.connect(addr, { connectTimeoutMs: opts.connectTimeoutMs, requestTimeoutMs })
  try {
    for (;;) {
      let stats: Map<string, string>
      try {
        stats = await conn.stats()
      } catch (err) {
        if (isServerError(err, 'PROTOCOL_ERROR')) return undefined // not a stats we understand: do not block the dump on it
        throw err
      }
      const expanding = stats.get('hash_is_expanding') === '1'
      const power = Number(stats.get('hash_power_level'))
      const items = Number(stats.get('curr_items'))
      const due = Number.isFinite(power) && Number.isFinite(items) && items > 1.5 * 2 ** power
      const now = Date.now()
      if (now >= deadline || (!expanding && (!due || now >= dueDeadline))) return tableState(stats)
      // Polled often: `stats` costs the server next to nothing, and every ms between the end of
      // the expansion and the walk is a ms the job waits for nothing (warm on freshly loaded
      // peers waits here before its hash walks).
      try {
        await sleep(50, undefined, opts.signal === undefined ? undefined : { signal: opts.signal })
      } catch (err) {
        throw interrupted(server, opts.signal?.reason ?? err)
      }
    }
  } finally {
    await conn.close()
  }
}

/** `stats` once on a connection of its own (the dump's connection is closed by then). */
async function readTableState(addr: ServerAddress, opts: ResolvedOptions): Promise<TableState | undefined> {
  const requestTimeoutMs = Math.min(opts.idleTimeoutMs, META_CONNECTION_DEFAULTS.requestTimeoutMs)
  const conn = await MetaConnection.connect(addr, { connectTimeoutMs: opts.connectTimeoutMs, requestTimeoutMs })
  try {
    return tableState(await conn.stats())
  } finally {
    await conn.close()
  }
}

type ResolvedOptions = MetadumpOptions & Required<Omit<MetadumpOptions, 'onEntry' | 'accept' | 'signal' | 'onWalk'>>

type Outcome = { kind: 'done'; entries: number } | { kind: 'busy'; line: string } | { kind: 'rejected'; line: string }

const MAX_LINE = 64 * 1024

async function dumpOnce(
  addr: ServerAddress,
  server: string,
  mode: 'hash' | 'all',
  opts: ResolvedOptions,
): Promise<Outcome> {
  const reader = new SocketReader()
  const socket = await openSocket(addr, opts.connectTimeoutMs, transportSettings(), reader)
  return new Promise<Outcome>((resolve, reject) => {
    // The CAS is decoded only when asked for (the engine never asks): an own enumerable getter,
    // so a copy made with spread still has it.
    let casBuf: Buffer = Buffer.alloc(0)
    let casStart = -1
    let casEnd = -1
    const entry: DumpEntry = {
      key: Buffer.alloc(0),
      exp: -1,
      la: 0,
      get cas(): string {
        return casStart < 0 ? '0' : casBuf.toString('latin1', casStart, casEnd)
      },
      fetched: false,
      cls: 0,
      size: 0,
      flags: -1,
    }
    let keyScratch = Buffer.allocUnsafe(1024)
    // keyScratch[0, n) for each length n, made once: a key view per entry would be an allocation per key.
    let keyViews: (Buffer | undefined)[] = []
    const keyView = (n: number): Buffer => (keyViews[n] ??= keyScratch.subarray(0, n))
    const decodeKey = (buf: Buffer, start: number, end: number): void => {
      const n = end - start
      if (n > keyScratch.length) {
        keyScratch = Buffer.allocUnsafe(Math.max(n, keyScratch.length * 2))
        keyViews = []
      }
      entry.key = keyView(uriDecodeInto(buf, start, end, keyScratch))
    }
    let partial = Buffer.allocUnsafe(1024)
    let partialLen = 0
    let entries = 0
    let settled = false
    let lastData = Date.now()
    let idleTimer: NodeJS.Timeout | undefined

    const onAbort = (): void => finish(interrupted(server, opts.signal?.reason))
    opts.signal?.addEventListener('abort', onAbort, { once: true })
    if (opts.signal?.aborted === true) queueMicrotask(onAbort)

    function finish(result: Outcome | Error): void {
      if (settled) return
      settled = true
      if (idleTimer !== undefined) clearTimeout(idleTimer)
      opts.signal?.removeEventListener('abort', onAbort)
      socket.destroy()
      if (result instanceof Error) reject(result)
      else resolve(result)
    }

    const onIdle = (): void => {
      idleTimer = undefined
      if (settled) return
      const idle = Date.now() - lastData
      if (idle >= opts.idleTimeoutMs) finish(timedOut(server, `"lru_crawler metadump ${mode}" (no data)`, opts.idleTimeoutMs))
      else idleTimer = setTimeout(onIdle, opts.idleTimeoutMs - idle)
    }

    socket.on('error', (err) => finish(connectionClosed(server, undefined, err)))
    socket.on('close', () => finish(connectionClosed(server, undefined)))
    reader.onData = (chunk: Buffer): void => {
      if (settled) return
      lastData = Date.now()
      try {
        onChunk(chunk)
      } catch (err) {
        finish(err instanceof Error ? err : new Error(String(err)))
      }
    }
    socket.setNoDelay(true)
    lastData = Date.now()
    idleTimer = setTimeout(onIdle, opts.idleTimeoutMs)
    socket.write(`lru_crawler metadump ${mode}\r\n`)

    function onChunk(chunk: Buffer): void {
      let pos = 0
      if (partialLen > 0) {
        const lf = chunk.indexOf(0x0a)
        const take = lf < 0 ? chunk.length : lf
        if (partialLen + take > partial.length) {
          if (partialLen + take > MAX_LINE) throw protocolError(server, `a metadump line longer than ${MAX_LINE} bytes`)
          const grown = Buffer.allocUnsafe(Math.max(partial.length * 2, partialLen + take))
          partial.copy(grown, 0, 0, partialLen)
          partial = grown
        }
        chunk.copy(partial, partialLen, 0, take)
        partialLen += take
        if (lf < 0) return
        const len = partialLen
        partialLen = 0
        if (!onLine(partial, 0, len)) return
        pos = lf + 1
      }
      while (pos < chunk.length) {
        const lf = chunk.indexOf(0x0a, pos)
        if (lf < 0) break
        if (!onLine(chunk, pos, lf)) return
        pos = lf + 1
      }
      const rest = chunk.length - pos
      if (rest > 0) {
        if (rest > partial.length) {
          if (rest > MAX_LINE) throw protocolError(server, `a metadump line longer than ${MAX_LINE} bytes`)
          partial = Buffer.allocUnsafe(Math.max(rest, partial.length * 2))
        }
        chunk.copy(partial, 0, pos)
        partialLen = rest
      }
    }

    /** Handles one line (without "\n"); returns false once the dump is over. */
    function onLine(buf: Buffer, start: number, end: number): boolean {
      if (end > start && buf[end - 1] === 0x0d) end--
      // "key=" — the common case first.
      if (end - start > 4 && buf[start] === 0x6b && buf[start + 1] === 0x65 && buf[start + 2] === 0x79 && buf[start + 3] === 0x3d) {
        entries++
        let keyDecoded = false
        if (opts.accept !== undefined) {
          // The key alone first: a line whose key is not wanted is not read any further.
          let i = start + 4
          while (i < end && buf[i] !== 0x20) i++
          decodeKey(buf, start + 4, i)
          if (!opts.accept(entry.key)) return true
          keyDecoded = true
        }
        if (!parseEntryFast(buf, start, end, keyDecoded)) parseEntry(buf, start, end)
        opts.onEntry(entry)
        return true
      }
      const line = buf.toString('latin1', start, end).trim()
      if (line === 'END') {
        finish({ kind: 'done', entries })
        return false
      }
      if (line === 'OK' || line === '') return true // 1.6.43+ acknowledges the command first
      if (line.startsWith('BUSY') || line === 'ERROR locked try again later') {
        finish({ kind: 'busy', line })
        return false
      }
      if (line === 'ERROR metadump not allowed') {
        finish(dumpsDisabled(server))
        return false
      }
      if (line === 'CLIENT_ERROR lru crawler disabled') {
        finish(crawlerDisabled(server))
        return false
      }
      if (entries === 0 && (line.startsWith('ERROR') || line.startsWith('CLIENT_ERROR') || line.startsWith('BADCLASS'))) {
        finish({ kind: 'rejected', line })
        return false
      }
      finish(protocolError(server, `${excerpt(line)} in a metadump`))
      return false
    }

    /**
     * The line as every memcached 1.6 prints it, fields in this order: `key= exp= la= cas=
     * fetch= cls= size=`, then `flags=` on some versions, then only spaces. Returns false
     * (nothing set) for any other shape, which the general parser then reads.
     */
    function parseEntryFast(buf: Buffer, start: number, end: number, keyDecoded: boolean): boolean {
      let i = start + 4
      const keyStart = i
      while (i < end && buf[i] !== 0x20) i++
      const keyEnd = i
      if (!literalAt(buf, i, end, F_EXP)) return false
      const exp = intAt(buf, i + F_EXP.length, end)
      i = intEnd
      if (Number.isNaN(exp) || !literalAt(buf, i, end, F_LA)) return false
      const la = intAt(buf, i + F_LA.length, end)
      i = intEnd
      if (Number.isNaN(la) || !literalAt(buf, i, end, F_CAS)) return false
      const cs = i + F_CAS.length
      i = cs
      while (i < end && buf[i] !== 0x20) i++
      const ce = i
      if (!literalAt(buf, i, end, F_FETCH)) return false
      const fetched = buf[i + F_FETCH.length] === 0x79 // fetch=yes
      i += F_FETCH.length
      while (i < end && buf[i] !== 0x20) i++
      if (!literalAt(buf, i, end, F_CLS)) return false
      const cls = intAt(buf, i + F_CLS.length, end)
      i = intEnd
      if (Number.isNaN(cls) || !literalAt(buf, i, end, F_SIZE)) return false
      const size = intAt(buf, i + F_SIZE.length, end)
      i = intEnd
      if (Number.isNaN(size)) return false
      let flags = -1
      if (literalAt(buf, i, end, F_FLAGS)) {
        flags = intAt(buf, i + F_FLAGS.length, end)
        i = intEnd
        if (Number.isNaN(flags)) return false
      }
      while (i < end && buf[i] === 0x20) i++
      if (i < end) return false
      if (!keyDecoded) decodeKey(buf, keyStart, keyEnd)
      entry.exp = exp
      entry.la = la
      casBuf = buf
      casStart = cs
      casEnd = ce
      entry.fetched = fetched
      entry.cls = cls
      entry.size = size
      entry.flags = flags
      return true
    }

    function parseEntry(buf: Buffer, start: number, end: number): void {
      entry.exp = -1
      entry.la = 0
      casStart = -1
      entry.fetched = false
      entry.cls = 0
      entry.size = 0
      entry.flags = -1
      let haveKey = false
      let i = start
      while (i < end) {
        while (i < end && (buf[i] === 0x20 || buf[i] === 0x09)) i++
        if (i >= end) break
        const nameStart = i
        let eq = -1
        while (i < end && buf[i] !== 0x20 && buf[i] !== 0x09) {
          if (eq < 0 && buf[i] === 0x3d) eq = i
          i++
        }
        if (eq < 0) continue
        const v = eq + 1
        const c0 = buf[nameStart]!
        switch (eq - nameStart) {
          case 3:
            if (c0 === 0x6b) {
              // key
              decodeKey(buf, v, i)
              haveKey = true
            } else if (c0 === 0x65) entry.exp = parseIntAt(buf, v, i)
            else if (c0 === 0x63 && buf[nameStart + 1] === 0x61) {
              casBuf = buf
              casStart = v
              casEnd = i
            }
            else if (c0 === 0x63 && buf[nameStart + 1] === 0x6c) entry.cls = parseIntAt(buf, v, i)
            break
          case 2:
            if (c0 === 0x6c && buf[nameStart + 1] === 0x61) entry.la = parseIntAt(buf, v, i)
            break
          case 4:
            if (c0 === 0x73 && buf[nameStart + 1] === 0x69) entry.size = parseIntAt(buf, v, i)
            break
          case 5:
            if (c0 === 0x66 && buf[nameStart + 1] === 0x65) entry.fetched = buf[v] === 0x79 // fetch=yes
            else if (c0 === 0x66 && buf[nameStart + 1] === 0x6c) entry.flags = parseIntAt(buf, v, i)
            break
        }
      }
      if (!haveKey) throw protocolError(server, `a metadump line without key: ${excerpt(buf.toString('latin1', start, end))}`)
    }
  })
}

const F_EXP = Buffer.from(' exp=', 'latin1')
const F_LA = Buffer.from(' la=', 'latin1')
const F_CAS = Buffer.from(' cas=', 'latin1')
const F_FETCH = Buffer.from(' fetch=', 'latin1')
const F_CLS = Buffer.from(' cls=', 'latin1')
const F_SIZE = Buffer.from(' size=', 'latin1')
const F_FLAGS = Buffer.from(' flags=', 'latin1')

function literalAt(buf: Buffer, at: number, end: number, lit: Buffer): boolean {
  if (at + lit.length > end) return false
  for (let j = 0; j < lit.length; j++) if (buf[at + j] !== lit[j]) return false
  return true
}

/** Where the last intAt stopped (a space or the end). */
let intEnd = 0

/** Decimal integer (optionally negative) from `start` up to a space or `end`; NaN if empty or not digits. Sets intEnd. */
function intAt(buf: Buffer, start: number, end: number): number {
  let i = start
  const negative = i < end && buf[i] === 0x2d
  if (negative) i++
  const first = i
  let n = 0
  for (; i < end; i++) {
    const c = buf[i]!
    if (c === 0x20) break
    const d = c - 0x30
    if (d < 0 || d > 9) {
      intEnd = i
      return NaN
    }
    n = n * 10 + d
  }
  intEnd = i
  if (i === first) return NaN
  return negative ? -n : n
}

/** Decimal integer (optionally negative) in buf[start, end); NaN if not digits. */
function parseIntAt(buf: Buffer, start: number, end: number): number {
  let i = start
  let negative = false
  if (buf[i] === 0x2d) {
    negative = true
    i++
  }
  if (i >= end) return NaN
  let n = 0
  for (; i < end; i++) {
    const d = buf[i]! - 0x30
    if (d < 0 || d > 9) return NaN
    n = n * 10 + d
  }
  return negative ? -n : n
}

function stripUndefined<T extends object>(o: T): T {
  const out = {} as T
  for (const [k, v] of Object.entries(o)) if (v !== undefined) (out as Record<string, unknown>)[k] = v
  return out
}
