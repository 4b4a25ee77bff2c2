/**
 * The recent rate of a growing count: (count now − count `windowMs` ago) ÷ the time between.
 * An average over the whole job would hide a slow-down (the guard halving the rate, a full
 * destination) for minutes; a window of a few seconds follows it.
 */
export class RateWindow {
  private readonly samples: { t: number; v: number }[] = []

  constructor(
    private readonly windowMs = 10_000,
    /** Below this span of samples the rate is not known yet. */
    private readonly minSpanMs = 1_000,
  ) {}

  add(t: number, v: number): void {
    const last = this.samples[this.samples.length - 1]
    if (last !== undefined && t - last.t < 100) {
      last.v = v
      return
    }
    this.samples.push({ t, v })
    while (this.samples.length > 2 && t - this.samples[1]!.t >= this.windowMs) this.samples.shift()
  }

  /** Per second; undefined until the samples span minSpanMs. */
  rate(): number | undefined {
    const first = this.samples[0]
    const last = this.samples[this.samples.length - 1]
    if (first === undefined || last === undefined || last.t - first.t < this.minSpanMs) return undefined
    return Math.max(0, ((last.v - first.v) * 1000) / (last.t - first.t))
  }

  clear(): void {
    this.samples.length = 0
  }
}

/**
 * Seconds left for `left` keys: at the recent rate, never faster than the throttle allows now
 * (right after the guard halves the rate the window still remembers the faster one), and at
 * the throttle's rate before any rate is measured. Undefined when unknown (unthrottled and not
 * measured yet, or paused).
 */
export function etaSeconds(left: number, recent: number | undefined, throttle: number): number | undefined {
  if (left <= 0) return 0
  let rate = recent
  if (throttle > 0) rate = rate === undefined ? throttle : Math.min(rate, throttle)
  if (rate === undefined || rate <= 0) return undefined
  return left / rate
}
