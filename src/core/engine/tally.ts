/** The figures of a job, kept as plain counters (the per-key path only increments numbers). */

export type SkipReason = 'gone' | 'expiring' | 'too-large' | 'unaddressable'
export type FailReason = 'destination-error' | 'destination-full' | 'destination-down' | 'source-error'

export interface DestinationTally {
  address: string
  keys: number
  bytes: number
  inPlace: number
  failed: number
}

export class Tally {
  /** Keys copied to their new owner(s) (and, for a move, deleted from the source). */
  moved = 0
  /** Keys every new owner already held (a pool-aware client wrote them there first). */
  inPlace = 0
  /** Keys that changed on the source while they were moved: their copies were invalidated. */
  conflicts = 0
  /** Value bytes written to destinations. */
  bytes = 0
  readonly skipped: Record<SkipReason, number> = { gone: 0, expiring: 0, 'too-large': 0, unaddressable: 0 }
  readonly failedBy: Record<FailReason, number> = { 'destination-error': 0, 'destination-full': 0, 'destination-down': 0, 'source-error': 0 }
  /** Keys read and routed (for progress). */
  processed = 0
  readonly perDestination: DestinationTally[]
  /** A few examples of problems, for the report (bounded). */
  readonly samples: { key: string; reason: string }[] = []

  constructor(destinations: readonly string[]) {
    this.perDestination = destinations.map((address) => ({ address, keys: 0, bytes: 0, inPlace: 0, failed: 0 }))
  }

  get failed(): number {
    let n = 0
    for (const v of Object.values(this.failedBy)) n += v
    return n
  }

  get skippedTotal(): number {
    let n = 0
    for (const v of Object.values(this.skipped)) n += v
    return n
  }

  /**
   * A new pass re-reads every key an earlier pass failed (it is still on the source, and copy
   * mode does not mark it handled): only the failures of the last pass are failures of the job.
   */
  forgetFailures(): void {
    for (const k of Object.keys(this.failedBy) as FailReason[]) this.failedBy[k] = 0
    for (const d of this.perDestination) d.failed = 0
  }

  sample(key: Uint8Array, reason: string): void {
    if (this.samples.length < 20) this.samples.push({ key: Buffer.from(key).toString('utf8'), reason })
  }

  toJSON(): Record<string, unknown> {
    return {
      moved: this.moved,
      inPlace: this.inPlace,
      conflicts: this.conflicts,
      bytes: this.bytes,
      skipped: { ...this.skipped },
      failed: this.failed,
      failedBy: { ...this.failedBy },
      perDestination: this.perDestination.map((d) => ({ ...d })),
      samples: this.samples,
    }
  }
}

/** Adds the figures of `from` (a job over the same destinations, in the same order) to `into`. */
export function addTally(into: Tally, from: Tally): void {
  into.moved += from.moved
  into.inPlace += from.inPlace
  into.conflicts += from.conflicts
  into.bytes += from.bytes
  into.processed += from.processed
  for (const k of Object.keys(from.skipped) as SkipReason[]) into.skipped[k] += from.skipped[k]
  for (const k of Object.keys(from.failedBy) as FailReason[]) into.failedBy[k] += from.failedBy[k]
  from.perDestination.forEach((d, i) => {
    const t = into.perDestination[i]
    if (t === undefined) return
    t.keys += d.keys
    t.bytes += d.bytes
    t.inPlace += d.inPlace
    t.failed += d.failed
  })
  for (const s of from.samples) if (into.samples.length < 20) into.samples.push(s)
}
