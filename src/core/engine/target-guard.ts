import { EventEmitter } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import { DEFAULT_ITEM_SIZE_MAX, MetaConnection, parseAddress } from '../protocol/index.js'
import { isServerError } from '../protocol/errors.js'

const FIRST_POLL_RETRY_MS = 3000

export type GuardState = 'ok' | 'throttled' | 'paused' | 'full' | 'down'

export interface DestinationHealth {
  address: string
  state: GuardState
  limitBytes: number
  usedBytes: number
  freeBytes: number
  itemSizeMax: number
  /** Evictions and store_no_memory since the job started watching. */
  evictions: number
  storeNoMemory: number
  /** Server clock minus local clock, seconds (for absolute expiry times). */
  clockOffset: number
}

/**
 * A stored item takes a slab chunk, not its own size: chunk classes grow by the factor 1.25, so a
 * chunk is at most 25 % larger than the item. Room is reserved at this rate between two polls.
 */
export const SLAB_CHUNK_FACTOR = 1.25

export interface GuardOptions {
  /** Stop sending to a destination whose free room falls under this many bytes (or this fraction of its limit, when < 1). */
  minFree: number
  intervalMs?: number
  signal?: AbortSignal
}

/**
 * Watches every destination's `stats` about once a second. A rise in evictions or
 * store_no_memory halves the rate (throttled); if it persists for 3 polls the job pauses until
 * it stops; free room under --min-free marks the destination full (nothing more is sent to it).
 * Emits 'change' with the destination's health when its state changes.
 *
 * Free room is what memcached can still store without evicting: the memory it has not yet
 * carved into slab pages plus the free chunks of its pages (`stats slabs`), never more than
 * `limit_maxbytes - bytes`. (`bytes` alone overstates it by the chunk rounding: a 64 MB server
 * starts evicting with ~12 % of it "free".) One poll a second is far too slow for a job that
 * writes tens of MB a second, so the transfer also reserves each item's room before sending it
 * (`reserve`) and reports it answered (`settle`); a poll's figures replace what was settled
 * before it started.
 */
export class TargetGuard extends EventEmitter {
  readonly health = new Map<string, DestinationHealth>()
  private timer: NodeJS.Timeout | undefined
  private readonly conns = new Map<string, MetaConnection>()
  private readonly base = new Map<string, { evictions: number; storeNoMemory: number }>()
  private readonly streak = new Map<string, number>()
  private readonly addresses: string[]
  private polling = false
  private stopped = false
  /** Per destination index: free room at the last poll, the min-free floor, bytes reserved since, bytes answered since. */
  private readonly free: Float64Array
  private readonly floor: Float64Array
  private readonly reserved: Float64Array
  private readonly settled: Float64Array
  /** Free room when reserve() last refused (-1: it has not): full until the destination has more. */
  private readonly refusedAt: Float64Array

  constructor(addresses: readonly string[], private readonly opts: GuardOptions) {
    super()
    this.addresses = [...addresses]
    this.free = new Float64Array(addresses.length)
    this.floor = new Float64Array(addresses.length)
    this.reserved = new Float64Array(addresses.length)
    this.settled = new Float64Array(addresses.length)
    this.refusedAt = new Float64Array(addresses.length).fill(-1)
  }

  /**
   * Reserves room for an item of `itemSize` bytes about to be written to destination `i` (an
   * index into the addresses given to the constructor). False when it would leave less than
   * --min-free: the item must not be sent, and the destination stays full until a poll shows it
   * has more room than it had then (items expired or deleted there).
   */
  reserve(i: number, itemSize: number): boolean {
    const need = itemSize * SLAB_CHUNK_FACTOR
    if (this.free[i]! - this.reserved[i]! - need < this.floor[i]!) {
      this.refusedAt[i] = this.free[i]!
      const h = this.health.get(this.addresses[i]!)
      if (h !== undefined && h.state !== 'full' && h.state !== 'down') {
        const next: DestinationHealth = { ...h, state: 'full' }
        this.health.set(next.address, next)
        this.emit('change', next)
      }
      return false
    }
    this.reserved[i]! += need
    return true
  }

  /** The writes holding `itemSize` bytes of reservations on destination `i` were answered. */
  settle(i: number, itemSize: number): void {
    this.settled[i]! += itemSize * SLAB_CHUNK_FACTOR
  }

  /** First poll (fills limits, item_size_max and clocks), then polls in the background. */
  async start(): Promise<void> {
    // A link reset just then (the destination answered the version check a moment ago) is
    // retried for a few seconds: only a destination that stays unreachable stops the job.
    const until = Date.now() + FIRST_POLL_RETRY_MS
    for (;;) {
      try {
        await this.poll(true)
        break
      } catch (err) {
        if (Date.now() >= until || !isServerError(err, 'CONNECTION_CLOSED') || this.stopped) throw err
        await sleep(250)
      }
    }
    this.timer = setInterval(() => void this.poll(false), this.opts.intervalMs ?? 1000)
    this.timer.unref()
  }

  async stop(): Promise<void> {
    this.stopped = true
    if (this.timer) clearInterval(this.timer)
    this.timer = undefined
    await Promise.all([...this.conns.values()].map((c) => c.close().catch(() => undefined)))
    this.conns.clear()
  }

  /** Rate multiplier for the throttle: 1, 0.5 while any destination shows pressure, 0 while paused. */
  rateFactor(): number {
    let f = 1
    for (const h of this.health.values()) {
      if (h.state === 'paused') return 0
      if (h.state === 'throttled') f = 0.5
    }
    return f
  }

  stateOf(address: string): GuardState {
    return this.health.get(address)?.state ?? 'ok'
  }

  private async connection(address: string): Promise<MetaConnection> {
    let c = this.conns.get(address)
    if (c === undefined || c.closed) {
      c = await MetaConnection.connect(parseAddress(address), { connectTimeoutMs: 2000, requestTimeoutMs: 2000 })
      if (this.stopped) {
        // Stopped while this (re)connection was under way: do not leave a socket open behind stop().
        await c.close()
        throw new Error('the guard is stopped')
      }
      this.conns.set(address, c)
    }
    return c
  }

  private async poll(first: boolean): Promise<void> {
    if (this.polling) return
    this.polling = true
    try {
      await Promise.all(this.addresses.map((a, i) => this.pollOne(a, i, first)))
    } finally {
      this.polling = false
    }
  }

  private async pollOne(address: string, i: number, first: boolean): Promise<void> {
    const prev = this.health.get(address)
    let next: DestinationHealth
    // Whatever was answered before the stats were asked for is in them.
    const settledBefore = this.settled[i]!
    try {
      const conn = await this.connection(address)
      const localNow = Date.now() / 1000
      const [stats, slabs, settings] = await Promise.all([
        conn.stats(),
        conn.stats('slabs'),
        first || prev === undefined ? conn.stats('settings') : Promise.resolve(undefined),
      ])
      const n = (k: string): number => Number(stats.get(k) ?? 0)
      const evictions = n('evictions')
      const storeNoMemory = n('store_no_memory')
      let base = this.base.get(address)
      if (base === undefined) {
        base = { evictions, storeNoMemory }
        this.base.set(address, base)
      }
      const limitBytes = n('limit_maxbytes')
      const usedBytes = n('bytes')
      const freeBytes = Math.max(0, Math.min(limitBytes - usedBytes, slabRoom(slabs, limitBytes)))
      const minFree = this.opts.minFree < 1 ? this.opts.minFree * limitBytes : this.opts.minFree
      this.reserved[i] = Math.max(0, this.reserved[i]! - settledBefore)
      this.settled[i] = this.settled[i]! - settledBefore
      this.free[i] = freeBytes
      this.floor[i] = minFree
      const newPressure =
        prev !== undefined && (evictions - base.evictions > prev.evictions || storeNoMemory - base.storeNoMemory > prev.storeNoMemory)
      const streak = newPressure ? (this.streak.get(address) ?? 0) + 1 : 0
      this.streak.set(address, streak)
      // Once reserve() refused, stay full (no flapping back to ok) until the destination has more room than then.
      if (this.refusedAt[i]! >= 0 && freeBytes > this.refusedAt[i]!) this.refusedAt[i] = -1
      const full = freeBytes < minFree || this.refusedAt[i]! >= 0
      const state: GuardState = full ? 'full' : streak >= 3 ? 'paused' : streak >= 1 ? 'throttled' : 'ok'
      next = {
        address,
        state,
        limitBytes,
        usedBytes,
        freeBytes,
        itemSizeMax: settings !== undefined ? Number(settings.get('item_size_max') ?? DEFAULT_ITEM_SIZE_MAX) : (prev?.itemSizeMax ?? DEFAULT_ITEM_SIZE_MAX),
        evictions: evictions - base.evictions,
        storeNoMemory: storeNoMemory - base.storeNoMemory,
        clockOffset: n('time') - Math.round(localNow),
      }
    } catch (err) {
      if (first) throw err
      next = { ...(prev as DestinationHealth), state: 'down' }
    }
    if (this.stopped) return
    this.health.set(address, next)
    if (prev === undefined || prev.state !== next.state) this.emit('change', next)
  }
}

/** Unallocated memory plus the free chunks of allocated slab pages, from `stats slabs`. */
function slabRoom(slabs: Map<string, string>, limitBytes: number): number {
  let room = limitBytes - Number(slabs.get('total_malloced') ?? 0)
  for (const [name, value] of slabs) {
    const colon = name.indexOf(':')
    if (colon < 0 || !(name.endsWith(':free_chunks') || name.endsWith(':free_chunks_end'))) continue
    room += Number(value) * Number(slabs.get(`${name.slice(0, colon)}:chunk_size`) ?? 0)
  }
  return room
}
