/**
 * An application workload through PoolClient that checks every answer: reads and writes over a
 * key set, each value carrying its key and a version. A read must never return a version older
 * than the last write of that key acknowledged before the read started (a stale value), nor
 * another key's value. Used by the drain-under-workload test and scripts/bench-client-drain.ts.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import type { PoolClient } from '../../src/core/client/index.js'
import { rng } from '../../src/core/local/demo.js'

export interface WorkloadOptions {
  client: PoolClient
  keys: readonly string[]
  /** Keys whose hit ratio is measured (those of the server being drained). */
  tracked: ReadonlySet<string>
  /** Operations in flight at once. */
  concurrency: number
  /** Share of operations that are writes (set), 0..1. */
  writeShare: number
  /** Bytes of padding in each value. */
  valueBytes: number
  /** Operations per second over all workers (0 or unset: as fast as they answer). */
  opsPerSecond?: number
  /** Width of the hit-ratio windows, in milliseconds. */
  windowMs: number
  seed?: number
}

export interface Counts {
  reads: number
  hits: number
}

export interface WorkloadReport {
  reads: number
  hits: number
  writes: number
  /** Reads that returned a version older than the last acknowledged write (must be 0). */
  stale: number
  /** Reads that returned another key's value (must be 0). */
  foreign: number
  staleSamples: string[]
  errors: number
  errorSamples: string[]
  /** Reads of tracked keys while measuring. */
  tracked: Counts
  /** The same, per window of `windowMs` since measuring started. */
  windows: Counts[]
  /** Version of each key's last acknowledged write (1 = the seeded value). */
  acked: Map<string, number>
}

export interface Workload {
  /** Starts a new measurement of the tracked keys' reads (windows from now), or stops counting. */
  measure(on: boolean): void
  /** The tracked keys' reads of the current (or last) measurement so far. */
  tracked(): Counts
  /** Stops issuing operations; resolves once the ones in flight answered. */
  stop(): Promise<WorkloadReport>
}

/** `key#version|padding`. */
export function versionedValue(key: string, version: number, padding: number): string {
  return `${key}#${version}|${'x'.repeat(padding)}`
}

export function parseVersioned(value: string): { key: string; version: number } | undefined {
  const bar = value.indexOf('|')
  const hash = value.lastIndexOf('#', bar < 0 ? undefined : bar)
  if (hash < 0) return undefined
  const version = Number(value.slice(hash + 1, bar < 0 ? undefined : bar))
  return Number.isInteger(version) ? { key: value.slice(0, hash), version } : undefined
}

/** Seeds every key with version 1 through the client. */
export async function seedVersioned(client: PoolClient, keys: readonly string[], padding: number): Promise<void> {
  for (let i = 0; i < keys.length; i += 200) {
    await Promise.all(keys.slice(i, i + 200).map((k) => client.set(k, versionedValue(k, 1, padding))))
  }
}

export function startWorkload(opts: WorkloadOptions): Workload {
  const random = rng(opts.seed ?? 42)
  const next = new Map<string, number>()
  const acked = new Map<string, number>()
  for (const k of opts.keys) {
    next.set(k, 1)
    acked.set(k, 1)
  }
  const report: WorkloadReport = {
    reads: 0,
    hits: 0,
    writes: 0,
    stale: 0,
    foreign: 0,
    staleSamples: [],
    errors: 0,
    errorSamples: [],
    tracked: { reads: 0, hits: 0 },
    windows: [],
    acked,
  }
  let stopped = false
  let measuringSince: number | undefined

  const read = async (key: string): Promise<void> => {
    const floor = acked.get(key)!
    const value = await opts.client.get(key)
    report.reads++
    if (value !== undefined) report.hits++
    if (measuringSince !== undefined && opts.tracked.has(key)) {
      const w = Math.floor((performance.now() - measuringSince) / opts.windowMs)
      while (report.windows.length <= w) report.windows.push({ reads: 0, hits: 0 })
      report.windows[w]!.reads++
      report.tracked.reads++
      if (value !== undefined) {
        report.windows[w]!.hits++
        report.tracked.hits++
      }
    }
    if (value === undefined) return
    const got = parseVersioned(value.toString())
    if (got === undefined || got.key !== key) {
      report.foreign++
      if (report.staleSamples.length < 20) report.staleSamples.push(`${key}: read ${value.toString().slice(0, 60)}`)
    } else if (got.version < floor) {
      report.stale++
      if (report.staleSamples.length < 20) report.staleSamples.push(`${key}: read version ${got.version}, ${floor} was acknowledged before the read`)
    }
  }

  // One write per key at a time: two unordered writes of one key are the application's race, not a stale read.
  const writing = new Set<string>()
  const write = async (key: string): Promise<void> => {
    const version = next.get(key)! + 1
    next.set(key, version)
    writing.add(key)
    try {
      await opts.client.set(key, versionedValue(key, version, opts.valueBytes))
    } finally {
      writing.delete(key)
    }
    report.writes++
    if (version > acked.get(key)!) acked.set(key, version)
  }

  // Paced like an application with a steady request rate: operation n starts at t0 + n / rate.
  const t0 = performance.now()
  let issued = 0
  const pace = async (): Promise<void> => {
    const rate = opts.opsPerSecond ?? 0
    if (rate <= 0) return
    const at = t0 + (issued++ * 1000) / rate
    const wait = at - performance.now()
    if (wait > 1) await sleep(wait)
  }

  const worker = async (): Promise<void> => {
    while (!stopped) {
      await pace()
      if (stopped) break
      const key = opts.keys[Math.floor(random() * opts.keys.length)]!
      try {
        if (random() < opts.writeShare && !writing.has(key)) await write(key)
        else await read(key)
      } catch (err) {
        report.errors++
        if (report.errorSamples.length < 10) report.errorSamples.push(`${key}: ${(err as Error).message}`)
      }
    }
  }
  const workers = Array.from({ length: opts.concurrency }, () => worker())

  return {
    measure(on) {
      measuringSince = on ? performance.now() : undefined
      if (on) {
        report.tracked = { reads: 0, hits: 0 }
        report.windows = []
      }
    },
    tracked() {
      return { ...report.tracked }
    },
    async stop() {
      stopped = true
      await Promise.all(workers)
      return report
    },
  }
}

/** Hit ratio of a count (1 when nothing was read). */
export function hitRatio(c: Counts): number {
  return c.reads === 0 ? 1 : c.hits / c.reads
}

/** The window with the lowest hit ratio among those with at least `minReads` reads. */
export function worstWindow(windows: readonly Counts[], minReads = 20): { index: number; ratio: number; reads: number } | undefined {
  let worst: { index: number; ratio: number; reads: number } | undefined
  windows.forEach((w, index) => {
    if (w.reads < minReads) return
    const ratio = hitRatio(w)
    if (worst === undefined || ratio < worst.ratio) worst = { index, ratio, reads: w.reads }
  })
  return worst
}
