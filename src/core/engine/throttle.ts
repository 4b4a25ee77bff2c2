import { setTimeout as sleep } from 'node:timers/promises'

/** Largest burst, in seconds of the rate. */
const BURST_SECONDS = 0.1

/**
 * A token bucket: `rate` tokens a second. rate 0 = unlimited. `factor` (0..1] scales the rate
 * without losing the configured value: the guard halves it on evictions and restores it when
 * they stop.
 *
 * It starts empty and holds at most a tenth of a second's worth: a bucket that starts full, or
 * refills to a whole second while the job dumps, lets a second's worth through at once on top
 * of the steady rate (`--rate 20000` ran 26k keys/s over the first 3 s). A request larger than
 * the burst goes through once the burst is there, into debt that later requests wait out, so
 * over any span the tokens taken stay within rate × span + burst + one request.
 */
export class TokenBucket {
  private tokens = 0
  private last = performance.now()
  factor = 1

  constructor(readonly rate: number) {}

  get effectiveRate(): number {
    return this.rate * this.factor
  }

  /** The last waiter in line: takers wait one after another. */
  private tail: Promise<void> = Promise.resolve()

  /**
   * Waits until `n` tokens are available (or the burst, for a larger request), then takes them.
   * Takers queue (first come, first served), so only one of them sleeps at a time: a rebalance's
   * sources × in-flight batches all waiting with the job's AbortSignal would each add an abort
   * listener to it (MaxListenersExceededWarning from 3 sources on).
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
      const burst = Math.max(1, rate * BURST_SECONDS)
      this.tokens = Math.min(burst, this.tokens + ((now - this.last) / 1000) * rate)
      this.last = now
      const need = Math.min(n, burst)
      if (this.tokens >= need) {
        this.tokens -= n
        return
      }
      const waitMs = Math.max(1, ((need - this.tokens) / rate) * 1000)
      await sleep(Math.min(waitMs, 250), undefined, signal ? { signal } : undefined).catch(() => undefined)
      if (signal?.aborted) return
    }
  }
}
