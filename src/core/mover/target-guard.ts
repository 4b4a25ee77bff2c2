import { EventEmitter } from 'node:events'
import { MetaConnection, parseAddress } from '../protocol/index.js'

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
 */
export class TargetGuard extends EventEmitter {
  readonly health = new Map<string, DestinationHealth>()
  private timer: NodeJS.Timeout | undefined
  private readonly conns = new Map<string, MetaConnection>()
  private readonly base = new Map<string, { evictions: number; storeNoMemory: number }>()
  private readonly streak = new Map<string, number>()
  private readonly addresses: string[]
  private polling = false

  constructor(addresses: readonly string[], private readonly opts: GuardOptions) {
    super()
    this.addresses = [...addresses]
  }

  /** First poll (fills limits, item_size_max and clocks), then polls in the background. */
  async start(): Promise<void> {
    await this.poll(true)
    this.timer = setInterval(() => void this.poll(false), this.opts.intervalMs ?? 1000)
    this.timer.unref()
  }

  async stop(): Promise<void> {
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
      this.conns.set(address, c)
    }
    return c
  }

  private async poll(first: boolean): Promise<void> {
    if (this.polling) return
    this.polling = true
    try {
      await Promise.all(this.addresses.map((a) => this.pollOne(a, first)))
    } finally {
      this.polling = false
    }
  }

  private async pollOne(address: string, first: boolean): Promise<void> {
    const prev = this.health.get(address)
    let next: DestinationHealth
    try {
      const conn = await this.connection(address)
      const localNow = Date.now() / 1000
      const [stats, settings] = await Promise.all([conn.stats(), first || prev === undefined ? conn.stats('settings') : Promise.resolve(undefined)])
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
      const freeBytes = Math.max(0, limitBytes - usedBytes)
      const minFree = this.opts.minFree < 1 ? this.opts.minFree * limitBytes : this.opts.minFree
      const newPressure =
        prev !== undefined && (evictions - base.evictions > prev.evictions || storeNoMemory - base.storeNoMemory > prev.storeNoMemory)
      const streak = newPressure ? (this.streak.get(address) ?? 0) + 1 : 0
      this.streak.set(address, streak)
      const state: GuardState = freeBytes < minFree ? 'full' : streak >= 3 ? 'paused' : streak >= 1 ? 'throttled' : 'ok'
      next = {
        address,
        state,
        limitBytes,
        usedBytes,
        freeBytes,
        itemSizeMax: settings !== undefined ? Number(settings.get('item_size_max') ?? 1048576) : (prev?.itemSizeMax ?? 1048576),
        evictions: evictions - base.evictions,
        storeNoMemory: storeNoMemory - base.storeNoMemory,
        clockOffset: n('time') - Math.round(localNow),
      }
    } catch (err) {
      if (first) throw err
      next = { ...(prev as DestinationHealth), state: 'down' }
    }
    this.health.set(address, next)
    if (prev === undefined || prev.state !== next.state) this.emit('change', next)
  }
}
