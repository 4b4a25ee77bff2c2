import { setTimeout as sleep } from 'node:timers/promises'
import { MemdrainError, ExitCode, isMemdrainError, refuse } from '../errors.js'
import { activeServers, findServer, newTransition, withServer, type Pool, type PoolServer, type TransitionRecord } from '../pool/model.js'
import { poolPlacement } from '../pool/placement.js'
import { withLockLoss, type HeldLock } from '../pool/lock.js'
import { connectChecked, flushServer, refuseWithoutRoom, runSourceJob, type EngineEvent, type PreflightDestination, type SourceJobOptions, type SourceJobResult } from '../engine/engine.js'
import { runCatchUp, type CatchUpResult } from '../handoff/catch-up.js'
import { CopyJournal, copyJournalFile, isCaughtUp, markCaughtUp, removeCopyJournal } from '../handoff/copy-journal.js'
import { FingerprintSet } from '../engine/fingerprint-set.js'
import { sourceJobSettings, type HandoffJobOptions } from '../handoff/job-options.js'
import type { RouteFn } from '../engine/transfer.js'
import { addTally, Tally } from '../engine/tally.js'
import { sumStoreMigrations } from '../client/migration.js'
import type { HandoffEvent } from '../engine/events.js'

export interface DrainOptions extends HandoffJobOptions {
  /** Address (or twemproxy name) of the server to drain. */
  server: string
  onEvent?: ((e: EngineEvent | DrainEvent) => void) | undefined
  /** Copy hand-off: resolves once the applications read the new owners (switch command, prompt, or traffic watch). */
  waitForSwitch?: ((ctx: { source: string; destinations: string[] }) => Promise<void>) | undefined
}

/** What a drain emits besides the engine's events (see engine/events.ts). */
export type DrainEvent = HandoffEvent

export interface DrainResult {
  server: string
  handoff: 'move' | 'copy'
  dryRun: boolean
  state: PoolServer['state']
  resumed: boolean
  keysAtStart: number
  bytesAtStart: number
  moved: number
  inPlace: number
  movedByClients: number
  conflicts: number
  /** Copy hand-off: copies re-copied after the switch because the source changed in between. */
  caughtUp: number
  /** Copy hand-off: copies deleted after the switch (the source deleted the key, or both sides changed). */
  invalidated: number
  skipped: Record<string, number>
  failed: number
  failedBy: Record<string, number>
  bytes: number
  ratio: number
  threshold: number
  purged: boolean
  passes: number
  durationSeconds: number
  keysPerSecond: number
  destinations: { address: string; keys: number; bytes: number; inPlace: number; failed: number }[]
  preflight: PreflightDestination[]
  samples: { key: string; reason: string }[]
  interrupted: boolean
  /**
   * The source restarted during the drain (its uptime is shorter than the drain): it came back
   * empty, so the keys not yet moved are gone (counted in skipped.gone), not failed.
   */
  sourceRestarted: boolean
  /** The exit status this outcome maps to: 0, 68 (partial) or 69 (interrupted). */
  status: number
}

/** Checks that `server` can be drained from `pool`; returns it. */
export function checkDrainable(pool: Pool, server: string, location: string): PoolServer {
  const s = findServer(pool, server)
  if (s === undefined) {
    throw refuse(`${server} is not in the pool ${location}`, [`Servers in the pool: ${pool.servers.map((x) => x.address).join(', ')}`], 'SERVER_NOT_IN_POOL', ExitCode.usage)
  }
  if (pool.rebalance !== undefined) {
    throw refuse(`a rebalance is in progress in ${location} (started ${pool.rebalance.startedAt})`, ['Finish it first (`memdrain rebalance` resumes it), or abort it (`memdrain rebalance --abort`).'], 'REBALANCE_IN_PROGRESS')
  }
  if (s.state === 'removed') throw refuse(`${s.address} is already removed from the pool`, ['Nothing to drain. `memdrain status` shows the pool.'], 'ALREADY_REMOVED')
  const remaining = activeServers(pool).filter((x) => x.address !== s.address)
  if (remaining.length === 0) {
    throw refuse(`${s.address} is the last active server: its keys would have nowhere to go`, ['Add a server to the pool first (memdrain rebalance --add ADDR).'], 'LAST_ACTIVE_SERVER')
  }
  if (pool.replicas > remaining.length) {
    throw refuse(`the pool keeps ${pool.replicas} copies of each key but only ${remaining.length} server(s) would remain`, ['Lower "replicas" in the pool file, or add a server first.'], 'TOO_FEW_SERVERS')
  }
  return s
}

interface SourceIdentity {
  pid: string
  /** Start time on the server's clock (time - uptime), seconds. */
  startedAt: number
  uptime: number
}

async function sourceIdentity(address: string): Promise<SourceIdentity> {
  const conn = await connectChecked(address, 'source')
  try {
    const st = await conn.stats()
    const uptime = Number(st.get('uptime'))
    return { pid: st.get('pid') ?? '', startedAt: Number(st.get('time')) - uptime, uptime }
  } finally {
    await conn.close()
  }
}

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

/** What the ratio is computed from: a drain's record, or one source of a rebalance (no client moves). */
export type TransitionCounts = Pick<TransitionRecord, 'keysAtStart' | 'moved' | 'inPlace' | 'skipped'> & { movedByClients?: number }

/** The two sides of the transitioned ratio: keys transitioned, and keys at start still live. */
export function transitionedCounts(r: TransitionCounts): { done: number; live: number } {
  const gone = r.skipped.gone ?? 0
  const byClients = Math.min(r.movedByClients ?? 0, gone)
  return { done: r.moved + r.inPlace + byClients, live: r.keysAtStart - gone - (r.skipped.expiring ?? 0) + byClients }
}

/**
 * drain: mark the server deactivating, move every live key to its owner(s) under the pool
 * without it, and once the transitioned ratio reaches the threshold, purge it and mark it removed.
 *
 * Copy hand-off (static clients): copy every key (journaling each copy), and once the ratio
 * reaches the threshold wait for the switch, catch up what changed at the source meanwhile, then
 * purge. A rerun after an interruption keeps the journal (see copy-journal.ts); one after the
 * switch goes straight to the catch-up.
 *
 * Keys that first appear at the source after the last copy pass (written by applications still
 * on the old server list while the switch is pending) are not copied after the switch: the
 * destination has no copy of ours to compare with, so an application that deletes such a key
 * at its new owner after the switch would see it come back with our late copy. A miss is safe;
 * a resurrected key is stale data.
 */
export async function runDrain(opts: DrainOptions): Promise<DrainResult> {
  const emit = opts.onEvent ?? (() => undefined)
  let snap = await opts.store.load()
  const server = checkDrainable(snap.pool, opts.server, opts.store.location)
  const resumed = server.state === 'deactivating'
  const handoff = opts.handoff ?? server.transition?.handoff ?? (snap.pool.clients === 'pool-aware' ? 'move' : 'copy')
  if (resumed && server.transition?.handoff === 'copy' && handoff === 'move') {
    // The copies made so far may be stale; the move hand-off takes a copy it finds at a
    // destination for a newer one written by a pool-aware client, and would keep them.
    throw refuse(`the drain of ${server.address} started with the copy hand-off: resume it with the copy hand-off`, [
      `Run the drain again with --handoff copy (or without --handoff).`,
    ], 'HANDOFF_CHANGED', ExitCode.usage)
  }
  if (handoff === 'copy' && !opts.dryRun && opts.waitForSwitch === undefined) {
    throw refuse('the copy hand-off needs a way to learn when applications have switched', [
      'Pass --switch-command CMD, or --wait-for-switch, or run in a terminal to confirm by hand.',
      'Or use --handoff move if your applications read the pool file (memdrain\'s library).',
    ], 'USAGE', ExitCode.usage)
  }

  let lock: HeldLock | undefined
  if (!opts.dryRun) lock = await opts.store.lock(`memdrain drain ${server.address}`)
  // A lock that can no longer be vouched for (etcd unreachable past its lease) stops the job as SIGINT does.
  const signal = withLockLoss(opts.signal, lock)
  let journal: CopyJournal | undefined
  let journalFile: string | undefined
  let marked = false
  let moving = false
  let revisionBeforeMark: string | undefined
  try {
    let record: TransitionRecord
    const markedAt = Date.now()
    if (!opts.dryRun) {
      snap = await opts.store.load()
      revisionBeforeMark = snap.revision
      const current = checkDrainable(snap.pool, server.address, opts.store.location)
      record = current.transition !== undefined && current.state === 'deactivating' ? { ...current.transition, threshold: opts.threshold, handoff } : newTransition(opts.threshold, handoff)
      const pool = withServer(snap.pool, server.address, (s) => ({ ...s, state: 'deactivating', transition: record }))
      snap = { pool, revision: await opts.store.save(pool, snap.revision) }
      marked = true
      emit({ type: 'marked', server: server.address, state: 'deactivating', resumed })
    } else {
      record = server.transition ?? newTransition(opts.threshold, handoff)
    }

    // The new pool: active servers without the drained one, in file order.
    const remaining = snap.pool.servers.filter((s) => s.state === 'active' && s.address !== server.address)
    const pp = poolPlacement({ ...snap.pool, servers: remaining }, remaining)
    const chain: number[] = []
    const route: RouteFn = (key, out, offset) => {
      const c = pp.placement.chain(key, pp.replicas, chain)
      for (let j = 0; j < c.length; j++) out[offset + j] = c[j]!
      return c.length
    }
    const targets = remaining.map((s) => s.address)

    // This run's figures over all its jobs; the record adds them to what earlier runs did.
    const total = new Tally(targets)
    const base = { ...record, skipped: { ...record.skipped } }
    let keysAtStart = record.keysAtStart
    let passes = 0
    let catchUp: CatchUpResult | undefined
    // Cumulative over the transition (client reports are tagged with its startedAt), so replaced, not added.
    let movedByClients = record.movedByClients
    const refreshMovedByClients = async (): Promise<void> => {
      // Keys moved off the server by pool-aware clients during this transition (their reports: beside a pool file, or in etcd).
      const sums = await sumStoreMigrations(opts.store, snap.pool).catch(() => undefined)
      if (sums !== undefined) movedByClients = sums.get(server.address) ?? 0
    }
    const snapshotRecord = (current: Tally | undefined, currentPasses: number): TransitionRecord => {
      // A key skipped for good (too large, unaddressable) is met again by every run (it stays
      // on the source): keep the larger count rather than a sum that would count it once per
      // run. Gone and expiring keys are not met again: those add up.
      const skipped: Record<string, number> = { ...base.skipped }
      for (const [k, v] of Object.entries(total.skipped)) {
        const n = v + (current?.skipped[k as keyof Tally['skipped']] ?? 0)
        if (k === 'gone' || k === 'expiring') skipped[k] = (skipped[k] ?? 0) + n
        else if (n > (skipped[k] ?? 0)) skipped[k] = n
        if (skipped[k] === 0) delete skipped[k]
      }
      return {
        ...base,
        updatedAt: new Date().toISOString(),
        keysAtStart,
        moved: base.moved + total.moved + (current?.moved ?? 0),
        inPlace: base.inPlace + total.inPlace + (current?.inPlace ?? 0),
        failed: total.failed + (current?.failed ?? 0) + (catchUp?.failed ?? 0),
        conflicts: base.conflicts + total.conflicts + (current?.conflicts ?? 0),
        movedByClients,
        skipped,
        passes: base.passes + passes + currentPasses,
      }
    }
    let saving: Promise<void> = Promise.resolve()
    let lastSave = Date.now()
    const persist = async (rec: TransitionRecord, state: PoolServer['state'] = 'deactivating'): Promise<void> => {
      if (opts.dryRun) return
      const pool = withServer(snap.pool, server.address, (s) => ({ ...s, state, transition: rec }))
      snap = { pool, revision: await opts.store.save(pool, snap.revision) }
      emit({ type: 'transition', server: server.address, ratio: transitionedRatio(rec) })
    }

    // The copy journal, and the keys it already covers (a rerun does not copy them again).
    const handled = handoff === 'copy' ? new FingerprintSet() : undefined
    if (handoff === 'copy' && !opts.dryRun) {
      journalFile = copyJournalFile(opts.spoolDir, opts.store.location, server.address)
      if (!resumed) removeCopyJournal(journalFile) // left by an earlier drain of this server whose record is gone
      journal = CopyJournal.open(journalFile, targets.join('\n'), (key) => handled!.add(key))
    }
    const switchedBefore = handoff === 'copy' && record.switchedAt !== undefined

    const runJob = async (extra: Partial<SourceJobOptions>, phase: 'main' | 'sweep' = 'main'): Promise<SourceJobResult> => {
      let currentPass = 0
      const job = await runSourceJob({
        source: server.address,
        targets,
        route,
        maxChain: Math.max(1, pp.replicas),
        mode: handoff === 'move' ? 'move' : 'copy',
        ...sourceJobSettings(opts),
        signal,
        handled,
        ...extra,
        onEvent: (e) => {
          if (phase === 'main' && e.type === 'dumped' && e.pass === 1) {
            if (!resumed || base.keysAtStart === 0) {
              keysAtStart = e.toMove
            } else {
              // Resuming: keys deleted or expired at the source since the earlier run will never
              // move. Live now = what earlier runs transitioned + what this dump still lists.
              const live = base.moved + base.inPlace + base.movedByClients + e.toMove
              if (live < base.keysAtStart - (base.skipped.gone ?? 0) - (base.skipped.expiring ?? 0)) {
                keysAtStart = live
                delete base.skipped.gone
                delete base.skipped.expiring
              }
            }
          }
          if (e.type === 'phase') {
            currentPass = e.pass
            if (e.phase === 'move') moving = true
          }
          if (e.type === 'progress' && Date.now() - lastSave > 5000) {
            lastSave = Date.now()
            const rec = snapshotRecord(e.tally, currentPass)
            saving = saving
              .then(refreshMovedByClients)
              .then(() => persist({ ...rec, movedByClients }))
              .catch(() => undefined)
          }
          emit(e)
        },
      })
      await saving
      addTally(total, job.tally)
      passes += job.passes
      if (job.sourceError !== undefined) await onSourceLost(job.sourceError)
      return job
    }

    // The source failed mid-job. If it restarted (uptime shorter than this drain), it came back
    // empty: what was not moved yet is gone, and there is nothing wrong with ending the drain.
    // Anything else (still down, stalled) is a failure: the record stays for a rerun.
    let sourceRestarted = false
    // Who the source is now (pid, start time), to tell a restart from a stall if it fails mid-job.
    const sourceBefore = opts.dryRun ? undefined : await sourceIdentity(server.address).catch(() => undefined)
    const onSourceLost = async (err: Error): Promise<void> => {
      // A restart takes a moment: look for the server for up to 5 s.
      let now: SourceIdentity
      for (const until = Date.now() + 5000; ; ) {
        try {
          now = await sourceIdentity(server.address)
          break
        } catch {
          if (Date.now() >= until || opts.signal?.aborted === true) throw err
          await sleep(250)
        }
      }
      if (sourceBefore === undefined || (now.pid === sourceBefore.pid && Math.abs(now.startedAt - sourceBefore.startedAt) <= 2)) throw err
      const uptime = now.uptime
      const rec = snapshotRecord(undefined, 0)
      const live = rec.keysAtStart - (rec.skipped.gone ?? 0) - (rec.skipped.expiring ?? 0)
      const lost = Math.max(0, live - rec.moved - rec.inPlace - rec.movedByClients)
      total.skipped.gone += lost
      sourceRestarted = true
      emit({
        type: 'source-restarted',
        server: server.address,
        uptimeSeconds: uptime,
        lost,
        message: `${server.address} restarted during the drain (up ${uptime} s, ${err.message.replace(/\.$/, '')}): it came back empty, so its ${lost} key(s) not moved yet are gone (counted as skipped: gone), not failed`,
      })
    }

    // 1. The move, or the copy before the switch.
    let main: SourceJobResult | undefined
    let interrupted = false
    let durationMs = 0
    // A transition started by `memdrain mark` and never run counts its grace from the mark.
    const neverRan = resumed && record.passes === 0 && record.keysAtStart === 0
    const graceFrom = neverRan ? Math.min(markedAt, Date.parse(record.startedAt) || markedAt) : markedAt
    const graceUntil = handoff === 'move' && (!resumed || neverRan) && !opts.dryRun ? graceFrom + (opts.clientGraceSeconds ?? 3) * 1000 : 0
    if (!switchedBefore) {
      main = await runJob({
        dryRun: opts.dryRun,
        ...(journal !== undefined ? { onCopied: (key, t, sourceCas, destCas) => journal!.append(key, t, sourceCas, destCas) } : {}),
        onPreflight: async (dests, keys) => {
          if (!opts.dryRun) refuseWithoutRoom(dests, opts.allowEvictions)
          const wait = graceUntil - Date.now()
          if (wait > 0 && keys > 0) {
            emit({ type: 'grace', seconds: wait / 1000 })
            await sleep(wait, undefined, signal !== undefined ? { signal } : undefined).catch(() => undefined)
          }
        },
      })
      interrupted = main.interrupted
      durationMs += main.durationMs
      if (sourceRestarted && handoff === 'move' && !interrupted) {
        // Keys written to the restarted source since it came back (clients not yet switched).
        const sweep = await runJob({}, 'sweep')
        durationMs += sweep.durationMs
        interrupted = sweep.interrupted
      }
    }
    await refreshMovedByClients()
    record = snapshotRecord(undefined, 0)

    // 2. Copy hand-off: the switch, then the catch-up of what changed at the source meanwhile.
    if (handoff === 'copy' && !opts.dryRun && !interrupted && (switchedBefore || transitionedRatio(record) >= opts.threshold)) {
      journal!.flush()
      if (!switchedBefore) {
        emit({ type: 'switch', phase: 'waiting' })
        try {
          await opts.waitForSwitch!({ source: server.address, destinations: targets })
        } catch (err) {
          await persist(record)
          throw err
        }
        record.switchedAt = new Date().toISOString()
        base.switchedAt = record.switchedAt
        emit({ type: 'switch', phase: 'done' })
        await persist(record)
      }
      if (!isCaughtUp(journalFile!)) {
        const started = performance.now()
        const totalRecords = journal!.count
        emit({ type: 'catch-up', phase: 'start', checked: 0, total: totalRecords, caughtUp: 0, invalidated: 0 })
        catchUp = await runCatchUp({
          source: server.address,
          targets,
          journal: journal!,
          rate: opts.rate,
          batchSize: opts.batchSize,
          inFlight: opts.inFlight,
          signal,
          onProgress: (c) => emit({ type: 'catch-up', phase: 'progress', checked: c.checked, total: totalRecords, caughtUp: c.caughtUp, invalidated: c.invalidated }),
        })
        durationMs += performance.now() - started
        emit({ type: 'catch-up', phase: 'done', checked: catchUp.checked, total: totalRecords, caughtUp: catchUp.caughtUp, invalidated: catchUp.invalidated })
        interrupted = catchUp.interrupted
        if (!interrupted) markCaughtUp(journalFile!)
      }
      await refreshMovedByClients()
      record = snapshotRecord(undefined, 0)
    }

    const ratio = transitionedRatio(record)
    const switched = handoff === 'move' || record.switchedAt !== undefined
    let purged = false
    let state: PoolServer['state'] = opts.dryRun ? server.state : 'deactivating'
    if (!opts.dryRun && !interrupted && switched && ratio >= opts.threshold) {
      if (opts.purge) {
        await flushServer(server.address, 'drained server')
        purged = true
        emit({ type: 'purged', server: server.address })
      }
      record.finishedAt = new Date().toISOString()
      state = 'removed'
      await persist(record, 'removed')
      journal?.close()
      journal = undefined
      if (journalFile !== undefined) removeCopyJournal(journalFile)
      emit({ type: 'marked', server: server.address, state: 'removed', resumed })
    } else {
      await persist(record)
    }
    const t = total
    const failed = t.failed + (catchUp?.failed ?? 0)
    const failedBy: Record<string, number> = { ...t.failedBy }
    if (catchUp !== undefined && catchUp.failed > 0) failedBy['catch-up'] = catchUp.failed
    const samples = [...t.samples]
    for (const s of catchUp?.samples ?? []) if (samples.length < 20) samples.push(s)
    const secs = durationMs / 1000
    const status = interrupted ? ExitCode.interrupted : opts.dryRun ? ExitCode.ok : ratio < opts.threshold || failed > 0 ? ExitCode.partial : ExitCode.ok
    return {
      server: server.address,
      handoff,
      dryRun: opts.dryRun,
      state,
      resumed,
      keysAtStart: record.keysAtStart,
      bytesAtStart: main?.bytesAtStart ?? 0,
      moved: record.moved,
      inPlace: record.inPlace,
      movedByClients: record.movedByClients,
      conflicts: record.conflicts,
      caughtUp: catchUp?.caughtUp ?? 0,
      invalidated: catchUp?.invalidated ?? 0,
      skipped: record.skipped,
      failed,
      failedBy,
      bytes: t.bytes,
      ratio,
      threshold: opts.threshold,
      purged,
      passes,
      durationSeconds: secs,
      keysPerSecond: secs > 0 ? t.processed / secs : 0,
      destinations: t.perDestination.map((d) => ({ ...d })),
      preflight: main?.preflight ?? [],
      samples,
      interrupted,
      sourceRestarted,
      status,
    }
  } catch (err) {
    if (moving && (lock?.lost?.aborted === true || (isMemdrainError(err) && err.code === 'POOL_STORE_UNREACHABLE'))) {
      // Keys are moved one by one with add + CAS delete, so each is in one safe state; only the
      // record's last figures may be missing. A rerun dumps what is left and continues.
      throw new MemdrainError(`the drain of ${server.address} stopped: the pool store became unreachable (${(err as Error).message})`, {
        code: 'INTERRUPTED',
        exitCode: ExitCode.interrupted,
        suggestions: ['Every key is either moved or still on the server; run the same command again once the pool store answers, to resume.'],
        cause: err,
      })
    }
    // Refused or failed before a key moved (no room, dumps disabled, a server unreachable): put
    // the server back as it was, so that nothing is left half-started.
    if (marked && !resumed && !moving) {
      try {
        journal?.close()
        journal = undefined
        if (journalFile !== undefined) removeCopyJournal(journalFile)
        const now = await opts.store.load()
        // Give the file back exactly as it was (a person's formatting included) when nothing
        // else changed it since; otherwise undo just the mark.
        const restored = opts.store.restore !== undefined && revisionBeforeMark !== undefined && (await opts.store.restore(revisionBeforeMark, now.revision))
        if (!restored) {
          const pool = withServer(now.pool, server.address, (s) => ({ ...s, state: 'active', transition: undefined }))
          await opts.store.save(pool, now.revision)
        }
        emit({ type: 'marked', server: server.address, state: 'active', resumed })
      } catch {
        // The refusal matters more; the server stays deactivating and a rerun resumes.
      }
    }
    throw err
  } finally {
    journal?.close()
    await lock?.release()
  }
}
