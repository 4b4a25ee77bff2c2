import { formatAddress, parseAddress, type ServerAddress } from './address.js'
import { EN, EX, HD, NF, NS, VA, statusName, MetaConnection, type MetaReply } from './connection.js'
import { ExitCode, MemdrainError } from '../errors.js'
import { metadump, type MetadumpOptions, type MetadumpResult } from './metadump.js'
import { MetaPayload } from './payload.js'
import { expiryToken, valueFits } from './ttl.js'

/**
 * A memcached node as memdrain's data paths use it: the few operations they need (dump, read for
 * a move, add, set, set-if-CAS, delete-if-CAS, delete, presence, limits, stats, flush),
 * batch-shaped so that every caller pipelines, and the only door to a node outside protocol/:
 * nothing else writes meta commands, reads their flags or asks for a dump.
 *
 * Two levels:
 * - `NodeBatch`: a reusable builder of one pipelined batch. Every operation carries an id (the
 *   meta opaque `O`), replies come back through one callback with the reused `MetaReply`, read
 *   with `itemTtl` / `itemFlags` / `itemCas` / `copyItemCas`. Keys (and values) are given as a
 *   range of a buffer, so the engine's hot path passes its packed keys and the value straight
 *   from the source's receive buffer: no per-key string, object or closure.
 * - `MemcachedNode`: the node itself: `dump` (the enumeration, streamed, one reused entry per
 *   key) and the same operations on arrays of keys or items, for callers that handle a few keys
 *   at a time (the application library's moves and read repair). A `NodeBatch` is sent on a
 *   node's `connection()`.
 *
 * Rules that hold for every writer: the TTL rule (`expiryToken`: the remaining TTL a copy gets,
 * relative up to 30 days, else absolute on the destination's clock) is applied here from the
 * remaining TTL the read returned; the item-size headroom (`valueFits`) decides what a node can
 * take; an item about to expire (`expiring`) is not copied.
 */

/** memcached's default item_size_max, assumed until a node's `stats settings` says otherwise. */
export const DEFAULT_ITEM_SIZE_MAX = 1_048_576

/** What a writer needs to know about a destination: the largest item it takes and its clock. */
export interface NodeLimits {
  /** `stats settings` item_size_max, bytes. */
  itemSizeMax: number
  /** The node's clock minus ours, seconds (for the TTL rule's absolute expiries). */
  clockOffset: number
}

/** NodeLimits from a node's `stats` and `stats settings` (either may be missing: the defaults then). */
export function limitsFromStats(stats: ReadonlyMap<string, string> | undefined, settings: ReadonlyMap<string, string> | undefined): NodeLimits {
  const time = stats?.get('time')
  return {
    itemSizeMax: Number(settings?.get('item_size_max') ?? DEFAULT_ITEM_SIZE_MAX),
    clockOffset: time === undefined ? 0 : Number(time) - Math.round(Date.now() / 1000),
  }
}

/** Reads a node's limits (`stats` and `stats settings`, pipelined). */
export async function readLimits(conn: MetaConnection): Promise<NodeLimits> {
  const [stats, settings] = await Promise.all([conn.stats(), conn.stats('settings')])
  return limitsFromStats(stats, settings)
}

/** `flush_all` on this one node; throws unless it answers OK. */
export async function flushNode(conn: MetaConnection, name = conn.server): Promise<void> {
  const reply = await conn.simple('flush_all')
  if (reply !== 'OK') throw new MemdrainError(`flush_all on ${name} answered ${reply}`, { code: 'PURGE_FAILED', exitCode: ExitCode.failed })
}

/**
 * Whether an item with `ttl` remaining seconds (-1 = none) is too close to expiry to copy:
 * under `minTtl` seconds (at least 1: a copy of an item expiring this second would outlive it).
 */
export function expiring(ttl: number, minTtl = 1): boolean {
  return ttl !== -1 && ttl < (minTtl > 1 ? minTtl : 1)
}

// ---- reading a reply (valid during the batch callback only, like the MetaReply itself) ----

const T = 0x74
const F = 0x66
const C = 0x63

/** The remaining TTL a read returned: seconds, -1 = never expires (also when the reply has none). */
export function itemTtl(r: MetaReply): number {
  const ttl = r.flagInt(T)
  return Number.isNaN(ttl) ? -1 : ttl
}

/** The client flags a read returned (0 when the reply has none). */
export function itemFlags(r: MetaReply): number {
  const f = r.flagInt(F)
  return Number.isNaN(f) ? 0 : f
}

/** The CAS a read (or a store with `reportCas`) returned, as decimal digits: a view of the receive buffer. */
export function itemCas(r: MetaReply): Buffer | undefined {
  return r.flagBytes(C)
}

/** Copies the CAS digits into `out` at `offset`; returns their length, or -1 when absent or longer than `max`. */
export function copyItemCas(r: MetaReply, out: Uint8Array, offset: number, max: number): number {
  return r.copyFlag(C, out, offset, max)
}

// ---- building a batch ----

/** How a store treats an existing key and whether its answer carries the new CAS; make one with `storeMode`, once. */
export interface StoreMode {
  /** @internal the mode flags, pre-encoded */
  readonly flags: Buffer
}

/**
 * `add` never replaces what the node holds (answer NS: it was there); `set` does. With
 * `reportCas` a stored item answers HD with its new CAS (`itemCas`), else a success is silent.
 */
export function storeMode(mode: 'add' | 'set', reportCas = false): StoreMode {
  return { flags: Buffer.from(` ${mode === 'add' ? 'ME' : 'MS'} ${reportCas ? 'c' : 'q'}`, 'latin1') }
}

// Flags written for every key, encoded once.
/** Value, client flags, remaining TTL, CAS; u: without bumping the LRU (a move must not warm the source); q: a miss is silent. */
const READ_FOR_MOVE = Buffer.from(' v f t c u q', 'latin1')
/** The same, as an ordinary read (a check of what a node holds now). */
const READ = Buffer.from(' v f t c q', 'latin1')
/** Presence only: HD when there, silent when not; u: no LRU bump. */
const PRESENT = Buffer.from(' u q', 'latin1')
/** The CAS alone (a probe: is the copy still the source's item?): HD with c, silent when not there. */
const READ_CAS = Buffer.from(' c q', 'latin1')
const QUIET = Buffer.from(' q', 'latin1')
const C_FLAG = 0x43

/**
 * One pipelined batch for one node, reused batch after batch (see `send`). Each operation is one
 * meta command with `id` as its opaque; what answers (statuses as in connection.ts):
 *   readForMove / read  VA with value, `itemFlags`, `itemTtl`, `itemCas`; a miss is silent
 *   present             HD when the key is there; a miss is silent
 *   store               NS (add: the key was there), EX/NF (set-if-CAS: changed/gone),
 *                       HD with `itemCas` when the mode reports the CAS; else a success is silent
 *   deleteIfCas         EX (changed since that CAS), NF (gone); a success is silent
 *   delete              NF (gone), or HD for each delete when `loud`; else a success is silent
 * and ERR for an error line (its opaque is -1: memcached does not echo it on errors).
 */
export class NodeBatch {
  private readonly payload: MetaPayload
  private ops = 0
  private lastSent: Buffer | undefined

  constructor(sizeHint?: number) {
    this.payload = new MetaPayload(sizeHint)
  }

  /** Operations queued since the last send or reset. */
  get count(): number {
    return this.ops
  }

  /** Bytes queued so far (a store's value ends 2 bytes before this right after it is queued). */
  get length(): number {
    return this.payload.length
  }

  /**
   * The bytes of the batch last sent: its values stay intact until the next operation is
   * queued (e.g. to compare a copy read back with what was written).
   */
  get sent(): Buffer | undefined {
    return this.lastSent
  }

  /** `mg <key> v f t c u q O<id>`: the item with all a copy needs, without bumping the source's LRU. */
  readForMove(id: number, keys: Uint8Array, keyStart: number, keyEnd: number): this {
    return this.get(READ_FOR_MOVE, id, keys, keyStart, keyEnd)
  }

  /** `mg <key> v f t c q O<id>`: the item as it is now (an ordinary read). */
  read(id: number, keys: Uint8Array, keyStart: number, keyEnd: number): this {
    return this.get(READ, id, keys, keyStart, keyEnd)
  }

  /** `mg <key> c q O<id>`: HD with the item's CAS, no value (silent when the key is not there). */
  readCas(id: number, keys: Uint8Array, keyStart: number, keyEnd: number): this {
    return this.get(READ_CAS, id, keys, keyStart, keyEnd)
  }

  /** `mg <key> u q O<id>`: HD if the node holds the key. */
  present(id: number, keys: Uint8Array, keyStart: number, keyEnd: number): this {
    return this.get(PRESENT, id, keys, keyStart, keyEnd)
  }

  /** `mg <key><flags> O<id>`: the one shape of every read above. */
  private get(flags: Buffer, id: number, keys: Uint8Array, keyStart: number, keyEnd: number): this {
    this.payload.commandAt('mg', keys, keyStart, keyEnd).encodedFlags(flags).flag('O', id).end()
    this.ops++
    return this
  }

  /**
   * `ms <key> <len> F<flags> T<expiry> [C<cas>] <mode> O<id>` with the value in value[valueStart,
   * valueEnd). `ttl` is the remaining TTL the read returned (-1 = none): the TTL rule turns it
   * into the expiry for a node whose clock is `clockOffset` seconds ahead of ours. `ifCas` (the
   * CAS digits the node's copy must still have) makes it a set-if-CAS. The caller checks
   * `valueFits` first: a value over the node's limit would only come back as an error.
   */
  store(
    mode: StoreMode,
    id: number,
    keys: Uint8Array,
    keyStart: number,
    keyEnd: number,
    value: Uint8Array,
    valueStart: number,
    valueEnd: number,
    clientFlags: number,
    ttl: number,
    clockOffset: number,
    ifCas?: Uint8Array | string,
  ): this {
    const p = this.payload
    p.commandAt('ms', keys, keyStart, keyEnd).size(valueEnd - valueStart).flag('F', clientFlags).flag('T', expiryToken(ttl, clockOffset))
    if (typeof ifCas === 'string') p.flagToken('C', ifCas)
    else if (ifCas !== undefined) p.flagBytesAt(C_FLAG, ifCas, 0, ifCas.length)
    p.encodedFlags(mode.flags).flag('O', id).endWithValue(value, valueStart, valueEnd)
    this.ops++
    return this
  }

  /** `md <key> C<cas> q O<id>` with the CAS digits cas[casStart, casEnd) (or a string of them): deletes only the item that still has that CAS. */
  deleteIfCas(id: number, keys: Uint8Array, keyStart: number, keyEnd: number, cas: Uint8Array | string, casStart = 0, casEnd = cas.length): this {
    const p = this.payload.commandAt('md', keys, keyStart, keyEnd)
    if (typeof cas === 'string') p.flagToken('C', cas)
    else p.flagBytesAt(C_FLAG, cas, casStart, casEnd)
    p.encodedFlags(QUIET).flag('O', id).end()
    this.ops++
    return this
  }

  /** `md <key> q O<id>` (or without `q` when `loud`: every delete then answers HD or NF). */
  delete(id: number, keys: Uint8Array, keyStart: number, keyEnd: number, loud = false): this {
    const p = this.payload.commandAt('md', keys, keyStart, keyEnd)
    if (!loud) p.encodedFlags(QUIET)
    p.flag('O', id).end()
    this.ops++
    return this
  }

  /**
   * Sends what was queued in one write and calls `onReply` for every answer (in order) until
   * the batch's end; resolves then, rejects when the connection fails (or `onReply` threw: the
   * batch is still read to its end). The builder's buffer is reused by the next batch: queue
   * nothing on this builder until this one settled (the socket may still be sending it).
   */
  send(conn: MetaConnection, onReply: (r: MetaReply) => void): Promise<void> {
    const bytes = this.payload.noop().takeReusing()
    this.lastSent = bytes
    this.ops = 0
    return conn.batch(bytes, onReply)
  }

  /**
   * `send`, handing the bytes off: the builder starts a fresh buffer, so the next batch can be
   * built (and sent) while this one is in flight. `sent` is not kept.
   */
  sendDetached(conn: MetaConnection, onReply: (r: MetaReply) => void): Promise<void> {
    const bytes = this.payload.noop().take()
    this.lastSent = undefined
    this.ops = 0
    return conn.batch(bytes, onReply)
  }

  /** Drops what was queued. */
  reset(): void {
    this.payload.reset()
    this.ops = 0
  }
}

// ---- the same, on arrays ----

/** An item as read for a move or a repair: everything needed to recreate it elsewhere. */
export interface ItemForMove {
  value: Buffer
  flags: number
  /** Remaining seconds, -1 = no expiry. */
  ttl: number
  /** CAS as decimal digits (it can exceed 2^53). */
  cas: string
}

/** A stored add or set: the CAS the node gave the item ("" if it did not say); `exists`: an add found the key there; `too-large`: not sent (see `valueFits`). */
export type StoreResult = { stored: true; cas: string } | { stored: false; reason: 'exists' | 'too-large' }

export type CasDeleteResult = 'deleted' | 'changed' | 'gone'

const ADD_CAS = storeMode('add', true)
const SET_CAS = storeMode('set', true)

/**
 * One node behind a connection (opened by the caller, e.g. lazily), with the batch operations on
 * arrays: one pipelined write per call (its own builder: calls may overlap), results in the order
 * of the input. A reply that is no
 * answer these operations expect (an error line) rejects the call with what the node said.
 */
export class MemcachedNode {
  readonly address: ServerAddress
  /** `host:port`, for messages. */
  readonly server: string
  /** The connection the operations (and a caller's `NodeBatch`) are sent on. */
  readonly connection: () => MetaConnection | Promise<MetaConnection>
  /** Set by `limits()`: until then a store is not checked against the node's item_size_max. */
  private known: NodeLimits | undefined
  /** The connection this node opened itself (none was given): `close()` closes it. */
  private own: Promise<MetaConnection> | undefined

  /**
   * The node at `address`. `connection` is the caller's connection to it (the caller opens it,
   * e.g. lazily, and closes it); without one the node opens its own on first use and `close()`
   * closes it. A node is one small object: wrap a connection in one wherever it is needed.
   */
  constructor(address: ServerAddress | string, connection?: () => MetaConnection | Promise<MetaConnection>) {
    this.address = typeof address === 'string' ? parseAddress(address) : address
    this.server = formatAddress(this.address)
    this.connection = connection ?? (() => (this.own ??= this.openOwn()))
  }

  /** The node behind an open connection (which stays the caller's to close). */
  static of(conn: MetaConnection): MemcachedNode {
    return new MemcachedNode(conn.address, () => conn)
  }

  /**
   * Lists every item with `lru_crawler metadump` (a hash walk, else the LRU walk), calling
   * `options.onEntry` synchronously per item with ONE reused entry whose key is a view of a
   * scratch buffer (copy or spool it before returning: nothing is allocated per key). Runs on
   * connections of its own (a dump occupies one until END), so it may overlap the node's other
   * operations. A live walk, not a snapshot; retries, errors and `distinctKeys` as in metadump.ts.
   */
  dump(options: MetadumpOptions): Promise<MetadumpResult> {
    return metadump(this.address, options)
  }

  /** Closes the connection the node opened itself, if any (a caller's connection is left open). */
  async close(): Promise<void> {
    const own = this.own
    this.own = undefined
    const conn = await own?.catch(() => undefined)
    await conn?.close().catch(() => undefined)
  }

  /** `stats` and `stats settings`: the node's item_size_max and clock, remembered for the stores. */
  async limits(): Promise<NodeLimits> {
    this.known = await readLimits(await this.connection())
    return this.known
  }

  /** Each key's item (value, flags, remaining TTL, CAS) without bumping its LRU; undefined when absent. */
  async readForMove(keys: readonly Uint8Array[]): Promise<(ItemForMove | undefined)[]> {
    const out = new Array<ItemForMove | undefined>(keys.length).fill(undefined)
    const b = new NodeBatch(256)
    for (let i = 0; i < keys.length; i++) b.readForMove(i, keys[i]!, 0, keys[i]!.length)
    await this.send(b, 'mg', keys.length, (r) => {
      if (r.status === VA) out[r.opaque] = { value: Buffer.from(r.value!), flags: itemFlags(r), ttl: itemTtl(r), cas: itemCas(r)?.toString('latin1') ?? '0' }
      else return r.status === EN
      return true
    })
    return out
  }

  /** Adds each item with its flags and remaining TTL (the TTL rule); an existing key is left as it is. */
  add(items: readonly { key: Uint8Array; item: Omit<ItemForMove, 'cas'> }[]): Promise<StoreResult[]> {
    return this.store(ADD_CAS, items)
  }

  /** Sets each item with its flags and remaining TTL (the TTL rule), replacing what is there. */
  set(items: readonly { key: Uint8Array; item: Omit<ItemForMove, 'cas'> }[]): Promise<StoreResult[]> {
    return this.store(SET_CAS, items)
  }

  /** Deletes each key only if its CAS (decimal digits) is unchanged: deleted, changed since (EX), or gone (NF). */
  async deleteIfCas(items: readonly { key: Uint8Array; cas: string | Uint8Array }[]): Promise<CasDeleteResult[]> {
    const out = new Array<CasDeleteResult>(items.length).fill('deleted')
    const b = new NodeBatch(256)
    for (let i = 0; i < items.length; i++) {
      const { key, cas } = items[i]!
      b.deleteIfCas(i, key, 0, key.length, cas)
    }
    await this.send(b, 'md', items.length, (r) => {
      if (r.status === EX) out[r.opaque] = 'changed'
      else if (r.status === NF) out[r.opaque] = 'gone'
      else return false
      return true
    })
    return out
  }

  /** Deletes each key; true where the node held it. */
  async delete(keys: readonly Uint8Array[]): Promise<boolean[]> {
    const out = new Array<boolean>(keys.length).fill(true)
    const b = new NodeBatch(256)
    for (let i = 0; i < keys.length; i++) b.delete(i, keys[i]!, 0, keys[i]!.length)
    await this.send(b, 'md', keys.length, (r) => {
      if (r.status !== NF) return false
      out[r.opaque] = false
      return true
    })
    return out
  }

  /** `stats [group]`: name → value. */
  async stats(group?: Parameters<MetaConnection['stats']>[0]): Promise<Map<string, string>> {
    return (await this.connection()).stats(group)
  }

  /** `flush_all` on this node only. */
  async flush(): Promise<void> {
    await flushNode(await this.connection())
  }

  private async store(mode: StoreMode, items: readonly { key: Uint8Array; item: Omit<ItemForMove, 'cas'> }[]): Promise<StoreResult[]> {
    const out = new Array<StoreResult>(items.length)
    const limits = this.known
    const b = new NodeBatch(256)
    for (let i = 0; i < items.length; i++) {
      const { key, item } = items[i]!
      if (limits !== undefined && !valueFits(item.value.length, limits.itemSizeMax)) {
        out[i] = { stored: false, reason: 'too-large' }
        continue
      }
      out[i] = { stored: true, cas: '' }
      b.store(mode, i, key, 0, key.length, item.value, 0, item.value.length, item.flags, item.ttl, limits?.clockOffset ?? 0)
    }
    await this.send(b, 'ms', items.length, (r) => {
      if (r.status === HD) out[r.opaque] = { stored: true, cas: itemCas(r)?.toString('latin1') ?? '' }
      else if (r.status === NS) out[r.opaque] = { stored: false, reason: 'exists' }
      else return false
      return true
    })
    return out
  }

  private openOwn(): Promise<MetaConnection> {
    return MetaConnection.connect(this.address).catch((err: unknown) => {
      this.own = undefined // the next operation tries again
      throw err
    })
  }

  /**
   * Sends the queued batch (if any); ids are indexes into the call's `size` inputs (some may not
   * have been sent); `accept` returns false for a reply that is no expected answer.
   */
  private async send(b: NodeBatch, verb: string, size: number, accept: (r: MetaReply) => boolean): Promise<void> {
    if (b.count === 0) return
    const conn = await this.connection()
    await b.send(conn, (r) => {
      if (r.opaque < 0 || r.opaque >= size || !accept(r)) throw new Error(`memcached at ${conn.server} answered ${statusName(r.status)} ${JSON.stringify(r.line())} to ${verb}`)
    })
  }
}
