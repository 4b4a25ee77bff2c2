/**
 * Down/up tracking per server address. A server that fails (connection error, timeout) is down
 * for `retryAfter`; meanwhile operations skip it. Once the period is over, ONE operation is let
 * through as a probe (the others keep skipping it until the probe answers): success brings the
 * server back, failure starts another period. State is kept by address, so it survives topology
 * switches.
 */

export interface ServerHealthSnapshot {
  readonly state: 'up' | 'down'
  /** Epoch ms when the current down period started. */
  readonly downSince?: number
  /** Epoch ms after which the next operation probes the server. */
  readonly retryAt?: number
  readonly lastError?: string
}

interface Entry {
  down: boolean
  downSince: number
  retryAt: number
  probing: boolean
  lastError: Error | undefined
}

export interface HealthListener {
  down(address: string, error: Error, retryAt: number): void
  up(address: string, downForMs: number): void
}

export class HealthTracker {
  private readonly entries = new Map<string, Entry>()

  constructor(
    private readonly retryAfterMs: number,
    private readonly listener: HealthListener,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Whether an operation may send to `address` now. Call it right before sending: after the down
   * period it hands out the single probe, which must be followed by success() or failure().
   */
  acquire(address: string): boolean {
    const e = this.entries.get(address)
    if (e === undefined || !e.down) return true
    if (e.probing || this.now() < e.retryAt) return false
    e.probing = true
    return true
  }

  /** Down and not yet due for a probe (does not hand out the probe). */
  isDown(address: string): boolean {
    const e = this.entries.get(address)
    return e !== undefined && e.down && (e.probing || this.now() < e.retryAt)
  }

  success(address: string): void {
    const e = this.entries.get(address)
    if (e === undefined || !e.down) return
    e.down = false
    e.probing = false
    this.listener.up(address, this.now() - e.downSince)
  }

  failure(address: string, error: Error): void {
    let e = this.entries.get(address)
    if (e === undefined) {
      e = { down: false, downSince: 0, retryAt: 0, probing: false, lastError: undefined }
      this.entries.set(address, e)
    }
    e.lastError = error
    const now = this.now()
    if (e.down) {
      // A failed probe (or a late failure of a request sent before the server was marked down).
      if (e.probing) {
        e.probing = false
        e.retryAt = now + this.retryAfterMs
      }
      return
    }
    e.down = true
    e.probing = false
    e.downSince = now
    e.retryAt = now + this.retryAfterMs
    this.listener.down(address, error, e.retryAt)
  }

  snapshot(address: string): ServerHealthSnapshot {
    const e = this.entries.get(address)
    if (e === undefined || !e.down) return { state: 'up' }
    return { state: 'down', downSince: e.downSince, retryAt: e.retryAt, ...(e.lastError === undefined ? {} : { lastError: e.lastError.message }) }
  }

  /** Forget servers that left the pool. */
  retain(addresses: ReadonlySet<string>): void {
    for (const address of this.entries.keys()) if (!addresses.has(address)) this.entries.delete(address)
  }
}
