import type { SourceRecord, TransitionRecord } from './model.js'

/** What the transitioned ratio is computed from: a drain's record, or one source of a pool change. */
export type TransitionCounts = Pick<TransitionRecord, 'keysAtStart' | 'moved' | 'inPlace' | 'skipped'> & { movedByClients?: number | undefined }

/**
 * (moved + in place + moved by clients) / keys at start that are still live: a key deleted,
 * expired or evicted at the source before it could move (`gone`), or skipped because it was
 * about to expire, has nothing left to transition. Without that, a drain of a server whose keys
 * expire while it runs could never reach its threshold.
 *
 * A key a pool-aware client moved after the dump is one the drain then finds `gone`: it counts
 * as live and transitioned, not as gone (at most `gone` of them: a key a client moved before the
 * dump is not among the keys at start at all).
 */
export function transitionedRatio(r: TransitionCounts): number {
  const { done, live } = transitionedCounts(r)
  return live <= 0 ? 1 : Math.min(1, done / live)
}

/** The two sides of the transitioned ratio: keys transitioned, and keys at start still live. */
export function transitionedCounts(r: TransitionCounts): { done: number; live: number } {
  const gone = r.skipped.gone ?? 0
  const byClients = Math.min(r.movedByClients ?? 0, gone)
  return { done: r.moved + r.inPlace + byClients, live: r.keysAtStart - gone - (r.skipped.expiring ?? 0) + byClients }
}

/** The figures of several sources as one (a drain's record over every source of a modulo pool). */
export function sumSources(records: readonly SourceRecord[]): SourceRecord & { movedByClients: number } {
  const out = { keysAtStart: 0, moved: 0, inPlace: 0, failed: 0, conflicts: 0, passes: 0, movedByClients: 0, skipped: {} as Record<string, number> }
  for (const r of records) {
    out.keysAtStart += r.keysAtStart
    out.moved += r.moved
    out.inPlace += r.inPlace
    out.failed += r.failed
    out.conflicts += r.conflicts
    out.passes = Math.max(out.passes, r.passes)
    out.movedByClients += r.movedByClients ?? 0
    for (const [k, v] of Object.entries(r.skipped)) out.skipped[k] = (out.skipped[k] ?? 0) + v
  }
  return out
}

/**
 * Whether a transition record says the server's keys were counted: a record `memdrain mark`
 * started and no job ran reads "0 of 0 keys transitioned (100 %)", which means nothing was
 * looked at, not that nothing is left.
 */
export function transitionCounted(r: TransitionRecord | undefined): boolean {
  return r !== undefined && (r.countedAt !== undefined || r.passes > 0 || r.keysAtStart > 0)
}
