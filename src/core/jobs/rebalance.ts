import { setTimeout as sleep } from 'node:timers/promises'
import { ExitCode, refuse } from '../errors.js'
import { activeServers, type Pool, type RebalanceRecord, type RebalanceSourceRecord } from '../pool/model.js'
import { poolPlacement } from '../pool/placement.js'
import { estimateMovedFraction, hasEdits, placesLike, targetPool, type PoolEdits } from '../pool/rebalance-target.js'
import type { PoolStore } from '../pool/store.js'
import { withLockLoss, type HeldLock } from '../pool/lock.js'
import { runCatchUp, type CatchUpResult } from '../handoff/catch-up.js'
import { CopyJournal, copyJournalFile, isCaughtUp, markCaughtUp, removeCopyJournal } from '../handoff/copy-journal.js'
import { flushServer, runSourceJob, type EngineEvent, type PreflightDestination, type SourceJobOptions, type SourceJobResult } from '../engine/engine.js'
import { FingerprintSet } from '../engine/fingerprint-set.js'
import { sourceJobSettings, type HandoffJobOptions } from '../handoff/job-options.js'
import { transitionedRatio } from './drain.js'
import { deleteUnownedKeys } from '../handoff/unowned-keys.js'
import { deleteCopies } from '../handoff/stale-copies.js'
import { addTally, Tally } from '../engine/tally.js'
import { TokenBucket } from '../engine/throttle.js'
import type { RouteFn } from '../engine/transfer.js'
import type { HandoffEvent } from '../engine/events.js'

/**
 * rebalance: every server of the previous pool is a source; each key whose owner (chain) under
 * the new pool does not include the server holding it goes to its new owner(s). One source job
 * per old server, all at once, under one --rate / --bandwidth (shared token buckets). A key
 * that stays is not read: the route answers 0 from the dump's key alone.
 *
 * The pool file during the rebalance is the new pool (servers leaving it `deactivating`) plus a
 * `rebalance` record holding the previous pool. Pool-aware clients (src/core/client) write to
 * the new owners and, on a miss, read through to the owner under the previous pool and move
 * what they find: the move hand-off. Static clients do not read the file: the copy hand-off
 * copies, waits for the switch, catches up per source, deletes the copies left on servers that
 * stay, then purges the servers that left.
 */

export interface RebalanceOptions extends HandoffJobOptions {
  edits: PoolEdits
  onEvent?: ((e: EngineEvent | RebalanceEvent) => void) | undefined
  /** Copy hand-off: resolves once the applications use the new server list. */
  waitForSwitch?: ((ctx: { removed: string[]; destinations: string[] }) => Promise<void>) | undefined
}

/** What a rebalance emits besides the engine's events (see engine/events.ts). */
export type RebalanceEvent = HandoffEvent

export interface PlanPair {
  from: string
  to: string
  keys: number
  bytes: number
}

export interface PlanDestination extends PreflightDestination {
  /** Whether the largest item routed here fits its item_size_max (larger ones are skipped and counted). */
  itemsFit: boolean
}

export interface RebalancePlan {
  /** Items the sources' first dumps listed (live or not yet reclaimed), over all sources. */
  keysListed: number
  keysToMove: number
  bytesToMove: number
  /** keysToMove / keysListed: the share of the pool's keys that changes owner. */
  fraction: number
  /** The same from placement alone, on synthetic keys. */
  estimatedFraction: number
  pairs: PlanPair[]
  destinations: PlanDestination[]
  /** At --rate; null when unthrottled. */
  estimatedSeconds: number | null
}

export interface RebalanceSourceResult extends RebalanceSourceRecord {
  address: string
  /** Leaves the pool (purged at the end) or stays. */
  leaving: boolean
  ratio: number
  purged: boolean
}

export interface RebalanceResult {
  handoff: 'move' | 'copy'
  dryRun: boolean
  resumed: boolean
  hash: string
  previousServers: string[]
  servers: string[]
  added: string[]
  removed: string[]
  reweighted: string[]
  plan: RebalancePlan
  sources: RebalanceSourceResult[]
  destinations: { address: string; keys: number; bytes: number; inPlace: number; failed: number }[]
  moved: number
  inPlace: number
  conflicts: number
  caughtUp: number
  invalidated: number
  /** Copy hand-off: copies deleted from servers that stay in the pool but no longer own the key. */
  staleCopiesDeleted: number
  failed: number
  failedBy: Record<string, number>
  skipped: Record<string, number>
  bytes: number
  ratio: number
  threshold: number
  switched: boolean
  finished: boolean
  durationSeconds: number
  keysPerSecond: number
  samples: { key: string; reason: string }[]
  interrupted: boolean
  status: number
}

const emptySource = (): RebalanceSourceRecord => ({ keysAtStart: 0, moved: 0, inPlace: 0, skipped: {}, failed: 0, conflicts: 0, passes: 0 })

interface Resolved {
  previous: Pool
  next: Pool
  resumed: boolean
  record: RebalanceRecord | undefined
}

/** The previous and the new pool, from the file and the edits; refuses what cannot be rebalanced. */
function resolveTarget(current: Pool, edits: PoolEdits, location: string): Resolved {
  const record = current.rebalance
  if (record !== undefined) {
    // A rebalance in progress: the same command (edits of the previous pool, or the same --to) resumes it.
    if (hasEdits(edits)) {
      const again = targetPool(record.previous, edits, location)
      if (!placesLike(again, current)) {
        throw refuse(`a rebalance is already in progress in ${location} (started ${record.startedAt}) towards another pool`, [
          'Run `memdrain rebalance` without edits to resume it, or `memdrain rebalance --abort` to go back (copy hand-off, before the switch).',
        ], 'REBALANCE_IN_PROGRESS')
      }
    }
    return { previous: record.previous, next: current, resumed: true, record }
  }
  if (!hasEdits(edits)) {
    throw refuse('nothing to rebalance: give the new pool', ['--to NEW_POOL_FILE, or --add ADDR[=WEIGHT], --remove ADDR, --weight ADDR=W.'], 'USAGE', ExitCode.usage)
  }
  const transit = current.servers.find((s) => s.state === 'deactivating')
  if (transit !== undefined) {
    throw refuse(`${transit.address} is being drained (deactivating): finish or abandon that drain first`, [
      `Run \`memdrain drain ${transit.address}\` to finish it, or \`memdrain mark ${transit.address} active\` to abandon it.`,
    ], 'DRAIN_IN_PROGRESS')
  }
  const next = targetPool(current, edits, location)
  if (next.replicas > current.replicas) {
    // A key's new chain would then hold servers that already have it plus ones that lack it, and
    // a source never copies a key it keeps; warm fills exactly those new copies.
    throw refuse(`the new pool keeps ${next.replicas} copies of each key, the current one ${current.replicas}: a rebalance cannot add copies`, [
      `Rebalance with "replicas": ${current.replicas} first, then raise "replicas" in the pool and run \`memdrain warm SERVER\` for each server: it copies every key whose chain now includes that server from a peer that holds it.`,
    ], 'REPLICAS_RAISED', ExitCode.usage)
  }
  if (placesLike(current, next)) {
    throw refuse('the new pool places every key exactly like the current one: nothing would move', ['Check the servers, weights and hash you gave.'], 'NOTHING_TO_MOVE', ExitCode.usage)
  }
  return { previous: current, next, resumed: false, record: undefined }
}

/** The one journal file per source of a copy-hand-off rebalance of the pool at `location`. */
function journalFileOf(spoolDir: string | undefined, location: string, source: string): string {
  return copyJournalFile(spoolDir, `${location}#rebalance`, source)
}

export async function runRebalance(opts: RebalanceOptions): Promise<RebalanceResult> {
  const emit = opts.onEvent ?? (() => undefined)
  let snap = await opts.store.load()
  const first = resolveTarget(snap.pool, opts.edits, opts.store.location)
  const handoff = opts.handoff ?? first.record?.handoff ?? (first.next.clients === 'pool-aware' ? 'move' : 'copy')
  if (first.record !== undefined && first.record.handoff !== handoff) {
    throw refuse(`the rebalance in progress uses the ${first.record.handoff} hand-off: resume it with that one`, [`Run again with --handoff ${first.record.handoff} (or without --handoff).`], 'HANDOFF_CHANGED', ExitCode.usage)
  }
  if (handoff === 'copy' && !opts.dryRun && opts.waitForSwitch === undefined) {
    throw refuse('the copy hand-off needs a way to learn when applications have switched', [
      'Pass --switch-command CMD, or --wait-for-switch (when servers leave), or run in a terminal to confirm by hand.',
      'Or use --handoff move if your applications read the pool file (memdrain\'s library).',
    ], 'USAGE', ExitCode.usage)
  }

  let lock: HeldLock | undefined
  if (!opts.dryRun) lock = await opts.store.lock('memdrain rebalance')
  // A lock that can no longer be vouched for (etcd unreachable past its lease) stops the job as SIGINT does.
  opts = { ...opts, signal: withLockLoss(opts.signal, lock) }
  const journals = new Map<string, CopyJournal>()
  let wrote = false
  let moving = false
  try {
    let resolved = first
    if (!opts.dryRun) {
      snap = await opts.store.load()
      resolved = resolveTarget(snap.pool, opts.edits, opts.store.location)
    }
    const { previous, next, resumed } = resolved
    const prevActive = activeServers(previous)
    const nextActive = activeServers(next)
    const added = nextActive.filter((s) => !prevActive.some((p) => p.address === s.address)).map((s) => s.address)
    const removed = prevActive.filter((s) => !nextActive.some((p) => p.address === s.address)).map((s) => s.address)
    const reweighted = nextActive.filter((s) => prevActive.some((p) => p.address === s.address && p.weight !== s.weight)).map((s) => s.address)
    const sources = prevActive.map((s) => s.address)
    const pp = poolPlacement(next)
    const targets = pp.servers.map((s) => s.address)
    const maxChain = Math.max(1, pp.replicas)

    const now = new Date().toISOString()
    let record: RebalanceRecord = resolved.record ?? { startedAt: now, updatedAt: now, handoff, threshold: opts.threshold, previous, sources: {} }
    record = { ...record, threshold: opts.threshold, sources: { ...record.sources } }
    for (const s of sources) record.sources[s] ??= emptySource()
    const base: Record<string, RebalanceSourceRecord> = {}
    for (const s of sources) base[s] = { ...record.sources[s]!, skipped: { ...record.sources[s]!.skipped } }

    const writePool = async (pool: Pool): Promise<void> => {
      snap = { pool, revision: await opts.store.save(pool, snap.revision) }
    }
    const markedAt = Date.now()
    if (!opts.dryRun) {
      await writePool({ ...next, rebalance: record })
      wrote = true
      emit({ type: 'rebalance', phase: resumed ? 'resumed' : 'started', added, removed })
      for (const r of removed) emit({ type: 'marked', server: r, state: 'deactivating', resumed })
    }

    // This run's figures per source; the record adds them to what earlier runs did.
    const tallies = new Map<string, Tally>(sources.map((s) => [s, new Tally(targets)]))
    const keysAtStart = new Map<string, number>()
    const passes = new Map<string, number>(sources.map((s) => [s, 0]))
    const live = new Map<string, Tally>()
    const snapshot = (): RebalanceRecord => {
      const out: Record<string, RebalanceSourceRecord> = {}
      for (const s of sources) {
        const b = base[s]!
        const t = new Tally(targets)
        addTally(t, tallies.get(s)!)
        const cur = live.get(s)
        if (cur !== undefined) addTally(t, cur)
        const skipped: Record<string, number> = { ...b.skipped }
        for (const [k, v] of Object.entries(t.skipped)) {
          if (k === 'gone' || k === 'expiring') skipped[k] = (skipped[k] ?? 0) + v
          else if (v > (skipped[k] ?? 0)) skipped[k] = v
          if (skipped[k] === 0) delete skipped[k]
        }
        out[s] = {
          keysAtStart: keysAtStart.get(s) ?? b.keysAtStart,
          moved: b.moved + t.moved,
          inPlace: b.inPlace + t.inPlace,
          failed: t.failed,
          conflicts: b.conflicts + t.conflicts,
          skipped,
          passes: b.passes + passes.get(s)!,
        }
      }
      return { ...record, updatedAt: new Date().toISOString(), sources: out }
    }
    let saving: Promise<void> = Promise.resolve()
    let lastSave = Date.now()
    const persist = async (): Promise<void> => {
      record = snapshot()
      if (opts.dryRun) return
      await writePool({ ...snap.pool, rebalance: record })
      for (const s of sources) emit({ type: 'transition', server: s, ratio: transitionedRatio(record.sources[s]!) })
    }

    // One global throttle over every source.
    const throttle = { keys: new TokenBucket(opts.rate), bytes: new TokenBucket(opts.bandwidth) }

    const routeFor = (source: string): RouteFn => {
      const self = targets.indexOf(source)
      const scratch: number[] = []
      return (key, out, offset) => {
        const c = pp.placement.chain(key, pp.replicas, scratch)
        if (self >= 0 && c.includes(self)) return 0
        for (let j = 0; j < c.length; j++) out[offset + j] = c[j]!
        return c.length
      }
    }

    // Preflight over every source: each job reports after its first dump and waits for the others.
    const preflights = new Map<string, { dests: PreflightDestination[]; listed: number }>()
    const listed = new Map<string, number>()
    let arrived = 0
    let release: (() => void) | undefined
    let fail: ((err: unknown) => void) | undefined
    const allArrived = new Promise<void>((resolve, reject) => {
      release = resolve
      fail = reject
    })
    allArrived.catch(() => undefined)
    // Interrupted during a dump: a job that never reports must not hold the others.
    opts.signal?.addEventListener('abort', () => release!(), { once: true })
    const graceUntil = handoff === 'move' && !resumed && !opts.dryRun ? markedAt + (opts.clientGraceSeconds ?? 3) * 1000 : 0
    let plan: RebalancePlan | undefined
    const buildPlan = (): RebalancePlan => {
      const pairs: PlanPair[] = []
      const destinations: PlanDestination[] = targets.map((address) => ({ address, keys: 0, bytes: 0, freeBytes: 0, limitBytes: 0, itemSizeMax: 0, fits: true, largestItem: 0, itemsFit: true }))
      let keysToMove = 0
      let bytesToMove = 0
      let keysListed = 0
      for (const s of sources) {
        const p = preflights.get(s)
        if (p === undefined) continue
        keysListed += p.listed
        p.dests.forEach((d, i) => {
          const t = destinations[i]!
          if (d.keys > 0) pairs.push({ from: s, to: d.address, keys: d.keys, bytes: d.bytes })
          t.keys += d.keys
          t.bytes += d.bytes
          t.freeBytes = d.freeBytes
          t.limitBytes = d.limitBytes
          t.itemSizeMax = d.itemSizeMax
          t.largestItem = Math.max(t.largestItem ?? 0, d.largestItem ?? 0)
        })
      }
      for (const s of sources) {
        const j = jobsAtStart.get(s)
        if (j !== undefined) {
          keysToMove += j.keys
          bytesToMove += j.bytes
        }
      }
      for (const t of destinations) {
        t.fits = t.bytes <= t.freeBytes
        t.itemsFit = (t.largestItem ?? 0) + 512 <= t.itemSizeMax
      }
      return {
        keysListed,
        keysToMove,
        bytesToMove,
        fraction: keysListed > 0 ? keysToMove / keysListed : 0,
        estimatedFraction: estimateMovedFraction(previous, next),
        pairs,
        destinations,
        estimatedSeconds: opts.rate > 0 ? keysToMove / opts.rate : null,
      }
    }
    const jobsAtStart = new Map<string, { keys: number; bytes: number }>()
    let graceAnnounced = false
    const onPreflight = async (source: string, dests: PreflightDestination[], keys: number, bytes: number): Promise<void> => {
      preflights.set(source, { dests, listed: listed.get(source) ?? 0 })
      jobsAtStart.set(source, { keys, bytes })
      if (++arrived === sources.length) {
        try {
          plan = buildPlan()
          const short = plan.destinations.filter((d) => !d.fits)
          if (short.length > 0 && !opts.allowEvictions && !opts.dryRun) {
            throw refuse(
              `moving these keys would make ${short.map((d) => d.address).join(', ')} evict: ${short.map((d) => `${d.address} needs ${d.bytes} bytes, has ${d.freeBytes} free`).join('; ')}`,
              ['Add memory or servers first, or pass --allow-evictions to move anyway (the destination then evicts its coldest keys).'],
              'NO_ROOM',
            )
          }
          release!()
        } catch (err) {
          fail!(err)
        }
      }
      await allArrived
      const wait = graceUntil - Date.now()
      if (wait > 0 && keys > 0) {
        if (!graceAnnounced) emit({ type: 'grace', seconds: wait / 1000 })
        graceAnnounced = true
        await sleep(wait, undefined, opts.signal !== undefined ? { signal: opts.signal } : undefined).catch(() => undefined)
      }
    }

    // The copy journals (and the keys they cover, which a rerun does not copy again).
    const handled = new Map<string, FingerprintSet>()
    if (handoff === 'copy') {
      for (const s of sources) {
        const set = new FingerprintSet()
        handled.set(s, set)
        if (opts.dryRun) continue
        const file = journalFileOf(opts.spoolDir, opts.store.location, s)
        if (!resumed) removeCopyJournal(file)
        journals.set(s, CopyJournal.open(file, targets.join('\n'), (key) => set.add(key)))
      }
    }

    const runJob = async (source: string, extra: Partial<SourceJobOptions>): Promise<SourceJobResult> => {
      const job = await runSourceJob({
        source,
        targets,
        route: routeFor(source),
        maxChain,
        mode: handoff === 'move' ? 'move' : 'copy',
        ...sourceJobSettings(opts),
        throttle,
        handled: handled.get(source),
        ...extra,
        onEvent: (e) => {
          if (e.type === 'dumped' && e.pass === 1) {
            listed.set(source, e.entries)
            const b = base[source]!
            if (!resumed || b.keysAtStart === 0) keysAtStart.set(source, e.toMove)
            else {
              // Resuming: what earlier runs handed over plus what this dump still lists.
              keysAtStart.set(source, b.moved + b.inPlace + e.toMove)
              delete b.skipped.gone
              delete b.skipped.expiring
            }
          }
          if (e.type === 'phase' && e.phase === 'move') moving = true
          if (e.type === 'progress') {
            live.set(source, e.tally)
            if (Date.now() - lastSave > 5000) {
              lastSave = Date.now()
              saving = saving.then(() => persist()).catch(() => undefined)
            }
          }
          // Each source's events as they are: the progress display and the metrics add them up.
          emit(e)
        },
      }).catch((err: unknown) => {
        fail?.(err)
        throw err
      })
      await saving
      live.delete(source)
      addTally(tallies.get(source)!, job.tally)
      passes.set(source, passes.get(source)! + job.passes)
      return job
    }

    let interrupted = false
    let durationMs = 0
    const started = performance.now()
    const switchedBefore = handoff === 'copy' && record.switchedAt !== undefined
    let mainJobs: SourceJobResult[] = []

    // 1. The move, or the copy before the switch: every source at once.
    if (!switchedBefore) {
      mainJobs = await Promise.all(
        sources.map((s) => {
          const journal = journals.get(s)
          return runJob(s, {
            dryRun: opts.dryRun,
            onPreflight: (dests, keys, bytes) => onPreflight(s, dests, keys, bytes),
            ...(journal !== undefined ? { onCopied: (key, t, sc, dc) => journal.append(key, t, sc, dc) } : {}),
          })
        }),
      )
      interrupted = mainJobs.some((j) => j.interrupted)
    }
    await persist()
    plan ??= buildPlan()

    const allReached = (): boolean => sources.every((s) => transitionedRatio(record.sources[s]!) >= opts.threshold)
    let catchUps: CatchUpResult[] = []
    let staleCopiesDeleted = 0
    let staleFailed = 0

    // 2. Copy hand-off: the switch, the catch-up, the keys that appeared since, the copies left on staying servers.
    if (handoff === 'copy' && !opts.dryRun && !interrupted && (switchedBefore || allReached())) {
      for (const j of journals.values()) j.flush()
      if (!switchedBefore) {
        emit({ type: 'switch', phase: 'waiting' })
        await opts.waitForSwitch!({ removed, destinations: targets })
        record = { ...record, switchedAt: new Date().toISOString() }
        emit({ type: 'switch', phase: 'done' })
        await persist()
      }
      const catchUpRate = opts.rate > 0 ? Math.max(1, Math.ceil(opts.rate / sources.length)) : 0
      const totalRecords = [...journals.values()].reduce((n, j) => n + j.count, 0)
      emit({ type: 'catch-up', phase: 'start', checked: 0, total: totalRecords, caughtUp: 0, invalidated: 0 })
      // Every source's catch-up at once: progress is their sum.
      const catchUpProgress = new Map<string, CatchUpResult>()
      const onCatchUp = (s: string, c: CatchUpResult): void => {
        catchUpProgress.set(s, c)
        const all = [...catchUpProgress.values()]
        const sumOf = (k: 'checked' | 'caughtUp' | 'invalidated'): number => all.reduce((n, x) => n + x[k], 0)
        emit({ type: 'catch-up', phase: 'progress', checked: sumOf('checked'), total: totalRecords, caughtUp: sumOf('caughtUp'), invalidated: sumOf('invalidated') })
      }
      catchUps = await Promise.all(
        sources.map(async (s) => {
          const journal = journals.get(s)!
          if (isCaughtUp(journal.file)) return { checked: 0, unchanged: 0, caughtUp: 0, invalidated: 0, superseded: 0, failed: 0, interrupted: false, samples: [] }
          const c = await runCatchUp({ source: s, targets, journal, rate: catchUpRate, batchSize: opts.batchSize, inFlight: opts.inFlight, signal: opts.signal, onProgress: (r) => onCatchUp(s, r) })
          if (!c.interrupted) markCaughtUp(journal.file)
          return c
        }),
      )
      const sum = (k: 'checked' | 'caughtUp' | 'invalidated'): number => catchUps.reduce((n, c) => n + c[k], 0)
      emit({ type: 'catch-up', phase: 'done', checked: sum('checked'), total: totalRecords, caughtUp: sum('caughtUp'), invalidated: sum('invalidated') })
      interrupted = catchUps.some((c) => c.interrupted)
      if (!interrupted) emit({ type: 'cleanup', phase: 'start', deleted: 0 })
      if (!interrupted) {
        // Keys that appeared on a server that stays since its last copy pass, and that it no
        // longer owns: deleted, not copied (see unowned-keys.ts: a late copy could resurrect a
        // key an application deleted at its new owner after the switch). Servers that leave are
        // purged below.
        const after = await Promise.all(
          sources
            .filter((s) => !removed.includes(s))
            .map((s) => {
              const self = targets.indexOf(s)
              const scratch: number[] = []
              return deleteUnownedKeys({ source: s, owns: (key) => pp.placement.chain(key, pp.replicas, scratch).includes(self), spoolDir: opts.spoolDir, signal: opts.signal })
            }),
        )
        for (const a of after) {
          staleCopiesDeleted += a.deleted
          staleFailed += a.failed
        }
        interrupted = opts.signal?.aborted === true
      }
      if (!interrupted) {
        const cleaned = await Promise.all(sources.filter((s) => !removed.includes(s)).map((s) => deleteCopies(journals.get(s)!, { kind: 'source', address: s }, opts.signal)))
        for (const c of cleaned) {
          staleCopiesDeleted += c.deleted
          staleFailed += c.failed
        }
        interrupted = opts.signal?.aborted === true
        emit({ type: 'cleanup', phase: 'done', deleted: staleCopiesDeleted })
      }
      await persist()
    }
    durationMs = performance.now() - started

    const switched = handoff === 'move' || record.switchedAt !== undefined
    const catchUpFailed = catchUps.reduce((n, c) => n + c.failed, 0)
    const failedNow = [...tallies.values()].reduce((n, t) => n + t.failed, 0) + catchUpFailed + staleFailed
    const finished = !opts.dryRun && !interrupted && switched && allReached()
    const purged = new Set<string>()
    if (finished) {
      if (opts.purge) {
        for (const r of removed) {
          await flushServer(r, 'server leaving the pool')
          purged.add(r)
          emit({ type: 'purged', server: r })
        }
      }
      const final: Pool = { ...next, servers: snap.pool.servers.map((s) => (removed.includes(s.address) ? { ...s, state: 'removed' as const } : s)) }
      delete (final as { rebalance?: unknown }).rebalance
      await writePool(final)
      for (const [s, j] of journals) {
        j.close()
        removeCopyJournal(journalFileOf(opts.spoolDir, opts.store.location, s))
      }
      journals.clear()
      for (const r of removed) emit({ type: 'marked', server: r, state: 'removed', resumed })
      emit({ type: 'rebalance', phase: 'finished', added, removed })
    }

    const total = new Tally(targets)
    for (const t of tallies.values()) addTally(total, t)
    const failedBy: Record<string, number> = { ...total.failedBy }
    if (catchUpFailed > 0) failedBy['catch-up'] = catchUpFailed
    if (staleFailed > 0) failedBy['stale-copy-delete'] = staleFailed
    const samples = [...total.samples]
    for (const c of catchUps) for (const s of c.samples) if (samples.length < 20) samples.push(s)
    const recs = sources.map((s) => record.sources[s]!)
    const sumRec = (k: 'keysAtStart' | 'moved' | 'inPlace' | 'conflicts'): number => recs.reduce((n, r) => n + r[k], 0)
    const skipped: Record<string, number> = {}
    for (const r of recs) for (const [k, v] of Object.entries(r.skipped)) skipped[k] = (skipped[k] ?? 0) + v
    const liveAtStart = sumRec('keysAtStart') - (skipped.gone ?? 0) - (skipped.expiring ?? 0)
    const ratio = liveAtStart <= 0 ? 1 : Math.min(1, (sumRec('moved') + sumRec('inPlace')) / liveAtStart)
    const secs = durationMs / 1000
    const status = interrupted ? ExitCode.interrupted : opts.dryRun ? ExitCode.ok : !finished || failedNow > 0 ? ExitCode.partial : ExitCode.ok
    return {
      handoff,
      dryRun: opts.dryRun,
      resumed,
      hash: next.hash,
      previousServers: prevActive.map((s) => s.address),
      servers: targets,
      added,
      removed,
      reweighted,
      plan,
      sources: sources.map((s) => ({ address: s, leaving: removed.includes(s), ...record.sources[s]!, ratio: transitionedRatio(record.sources[s]!), purged: purged.has(s) })),
      destinations: total.perDestination.map((d) => ({ ...d })),
      moved: sumRec('moved'),
      inPlace: sumRec('inPlace'),
      conflicts: sumRec('conflicts'),
      caughtUp: catchUps.reduce((n, c) => n + c.caughtUp, 0),
      invalidated: catchUps.reduce((n, c) => n + c.invalidated, 0),
      staleCopiesDeleted,
      failed: failedNow,
      failedBy,
      skipped,
      bytes: total.bytes,
      ratio,
      threshold: opts.threshold,
      switched: !opts.dryRun && switched,
      finished,
      durationSeconds: secs,
      keysPerSecond: secs > 0 ? total.processed / secs : 0,
      samples,
      interrupted,
      status,
    }
  } catch (err) {
    // Refused or failed before a key moved (no room, a server unreachable, dumps disabled):
    // put the previous pool back, so that nothing is left half-started.
    if (wrote && !first.resumed && !moving) {
      try {
        for (const [s, j] of journals) {
          j.close()
          removeCopyJournal(journalFileOf(opts.spoolDir, opts.store.location, s))
        }
        journals.clear()
        const now = await opts.store.load()
        if (now.pool.rebalance !== undefined) await opts.store.save(now.pool.rebalance.previous, now.revision)
      } catch {
        // The refusal matters more; the record stays and a rerun resumes.
      }
    }
    throw err
  } finally {
    for (const j of journals.values()) j.close()
    await lock?.release()
  }
}

export interface AbortResult {
  restored: boolean
  handoff: 'move' | 'copy'
  servers: string[]
  /** Copies the rebalance had made at destinations, deleted (CAS-checked). */
  copiesDeleted: number
  /** Copies left because an application wrote them since. */
  copiesKept: number
  failed: number
  status: number
}

/**
 * `rebalance --abort`: before the switch of a copy hand-off, the applications still read the
 * previous pool, so going back is deleting the copies made (only those still as copied) and
 * restoring the previous pool. After the switch, or with the move hand-off (pool-aware clients
 * follow the new pool from the start), the keys already live at their new owners: refused.
 */
export async function abortRebalance(store: PoolStore, spoolDir: string | undefined, signal?: AbortSignal): Promise<AbortResult> {
  const lock = await store.lock('memdrain rebalance --abort')
  try {
    const snap = await store.load()
    const record = snap.pool.rebalance
    if (record === undefined) throw refuse(`no rebalance is in progress in ${store.location}`, ['`memdrain status` shows the pool.'], 'NO_REBALANCE')
    const back = ['When this rebalance has finished, rebalance back with `memdrain rebalance --to OLD_POOL_FILE`.', 'Run `memdrain rebalance` (no edits) to resume and finish it.']
    if (record.handoff === 'move') {
      throw refuse('this rebalance uses the move hand-off: pool-aware clients have followed the new pool since it started, and moved keys live only at their new owners', back, 'ABORT_REFUSED')
    }
    if (record.switchedAt !== undefined) {
      throw refuse(`the applications switched to the new pool at ${record.switchedAt}: going back now would serve what they wrote since from nowhere, or stale copies`, back, 'ABORT_REFUSED')
    }
    const targets = poolPlacement(snap.pool).servers.map((s) => s.address)
    let copiesDeleted = 0
    let copiesKept = 0
    let failed = 0
    for (const s of activeServers(record.previous)) {
      const file = journalFileOf(spoolDir, store.location, s.address)
      const journal = CopyJournal.open(file, targets.join('\n'))
      try {
        const r = await deleteCopies(journal, { kind: 'destinations', addresses: targets }, signal)
        copiesDeleted += r.deleted
        copiesKept += r.changed
        failed += r.failed
      } finally {
        journal.close()
      }
    }
    if (signal?.aborted || failed > 0) {
      return { restored: false, handoff: record.handoff, servers: targets, copiesDeleted, copiesKept, failed, status: signal?.aborted ? ExitCode.interrupted : ExitCode.partial }
    }
    await store.save(record.previous, snap.revision)
    for (const s of activeServers(record.previous)) removeCopyJournal(journalFileOf(spoolDir, store.location, s.address))
    return { restored: true, handoff: record.handoff, servers: activeServers(record.previous).map((s) => s.address), copiesDeleted, copiesKept, failed, status: ExitCode.ok }
  } finally {
    await lock.release()
  }
}
