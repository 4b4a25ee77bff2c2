import { setTimeout as sleep } from 'node:timers/promises'

/**
 * A token bucket: `rate` tokens a second, bursts up to one second's worth. rate 0 = unlimited.
 * `factor` (0..1] scales the rate without losing the configured value: the guard halves it on
 * evictions and restores it when they stop.
 */
export class TokenBucket {
  private tokens: number
  private last = performance.now()
  factor = 1

  constructor(readonly rate: number) {
    this.tokens = rate
  }

  get effectiveRate(): number {
    return this.rate * this.factor
  }

  /** The last waiter in line: takers wait one after another. */
  private tail: Promise<void> = Promise.resolve()

  /**
   * Waits until `n` tokens are available, then takes them. A request above the burst is allowed
   * to go into debt. Takers queue (first come, first served), so only one of them sleeps at a time:
   * a rebalance's sources × in-flight batches all waiting with the job's AbortSignal would each
   * add an abort listener to it (MaxListenersExceededWarning from 3 sources on).
   */
  take(n: number, signal?: AbortSignal): Promise<void> {
    if (this.rate <= 0) return Promise.resolve()
    const turn = this.tail.then(() => this.takeInTurn(n, signal))
    this.tail = turn.catch(() => undefined)
    return turn
  }

  private async takeInTurn(n: number, signal?: AbortSignal): Promise<void> {
    for (;;) {
      const now = performance.now()
      const rate = this.effectiveRate
      this.tokens = Math.min(rate, this.tokens + ((now - this.last) / 1000) * rate)
      this.last = now
      if (this.tokens >= Math.min(n, rate) || this.tokens >= n) {
        this.tokens -= n
        return
      }
      const waitMs = Math.max(1, ((Math.min(n, rate) - this.tokens) / rate) * 1000)
      await sleep(Math.min(waitMs, 250), undefined, signal ? { signal } : undefined).catch(() => undefined)
      if (signal?.aborted) return
    }
  }
}
