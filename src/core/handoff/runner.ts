import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { poolSpellings, refuseSameServers } from '../inspect/server-identity.js'
import { existsSync } from 'node:fs'
import { ExitCode, MemdrainError, isMemdrainError, refuse } from '../errors.js'
import { JOB_DEFAULTS } from '../defaults.js'
import { activeServers, pastSwitch, type HandoffPhase, type Pool, type SourceRecord } from '../pool/model.js'
import { poolPlacement } from '../pool/placement.js'
import { estimateMovedFraction } from '../pool/rebalance-target.js'
import { withLockLoss, type HeldLock } from '../pool/lock.js'
import type { PoolStore } from '../pool/store.js'
import { sumSources, transitionedRatio } from '../pool/transition.js'
import { isModulo, HASH_INFO } from '../placement/registry.js'
import { connectChecked, flushServer, prepareSourceJob, prepareSources, whileNotAnswering, type EngineEvent, type PreparedSourceJob, type PreflightDestination, type SourceJobOptions, type SourceJobResult } from '../engine/index.js'
import { FingerprintSet } from '../engine/fingerprint-set.js'
import { addTally, Tally } from '../engine/tally.js'
import { TokenBucket } from '../engine/throttle.js'
import type { RouteFn } from '../engine/transfer.js'
import type { HandoffEvent } from '../engine/events.js'
import { runCatchUp, type CatchUpResult } from './catch-up.js'
import { CopyJournal, copyJournalFile, removeCopyJournal } from './copy-journal.js'
import { CopyFollow } from './copy-follow.js'
import { prepareSwitchMarks } from './switch-marks.js'
import { adoptPossibleCopies } from './adopt-copies.js'
import { deleteUnownedKeys } from './unowned-keys.js'
import { deleteCopies } from './stale-copies.js'
import { sourceJobSettings, type HandoffJobOptions } from './job-options.js'
import { exitCodeFor, type JobOutcome } from './outcome.js'
import { isServerError, valueFits, type ServerError } from '../protocol/index.js'

/**
 * The one runner of every pool change (drain = "remove S", rebalance = any change): the lock and
 * its loss, the mark, the plan, the grace, the engine over every source holding keys whose
 * owner (chain) changes, the copy hand-off's switch, catch-up and clean-up, the purge, the
 * record with its persisted phase, interruption and exit status. A job says what the change is
 * (a PoolChange) and how the pool file looks at each step; it keeps its own presentation.
 */

/** A pool change's figures as the runner keeps them; each job persists them in its own record. */
export interface HandoffRecord {
  startedAt: string
  updatedAt: string
  handoff: 'move' | 'copy'
  threshold: number
  phase?: HandoffPhase | undefined
  switchedAt?: string | undefined
  countedAt?: string | undefined
  /** Copy hand-off: the id written into each source's copy journal, so a rerun knows a journal it finds is this change's. */
  journalId?: string | undefined
  sources: Record<string, SourceRecord>
}

/** What a pool change is, resolved from the pool file as it is now. */
export interface ResolvedChange {
  /** Its active servers place keys before the change, in file order. */
  previous: Pool
  /** Its active servers place keys after the change: the destinations. */
  next: Pool
  /** Servers holding keys whose owner (chain) changes. */
  sources: string[]
  /** Servers that leave the pool (purged at the end). */
  leaving: string[]
  /** The change in progress, when this run resumes one. */
  record: HandoffRecord | undefined
  /** A change marked by hand (`memdrain mark`) that no job ran yet: its grace counts from then. */
  markedAt?: number | undefined
}

export interface PoolChange {
  /** For the lock holder and messages: "memdrain drain 10.0.0.3:11211". */
  command: string
  /** Names the copy journals of this change (one per source). */
  journalScope: string
  /** The change from the pool file; throws the refusals (nothing to do, another change in progress). */
  resolve(pool: Pool): ResolvedChange
  /** The pool file while the change runs (first write and every progress save). */
  inProgress(pool: Pool, change: ResolvedChange, record: HandoffRecord): Pool
  /** The pool file once the change is complete. */
  done(pool: Pool, change: ResolvedChange, record: HandoffRecord): Pool
  /** The pool file put back after a refusal, when the stored one is still the one this job wrote. */
  undone(pool: Pool, change: ResolvedChange): Pool
  /** Whether the figures allow the switch and the purge. */
  reached(record: HandoffRecord, threshold: number): boolean
  /** Keys pool-aware clients moved off each source during this change (their reports); none when unknown. */
  movedByClients?: ((pool: Pool, change: ResolvedChange) => Promise<Map<string, number> | undefined>) | undefined
}

/**
 * What the runner emits: the hand-off's events (engine/events.ts) and the engine's, each
 * source's as they are (with their `source`: the monitor adds them up), and `change` for the
 * job to present as its own (rebalance: its `rebalance` event; drain: its marks say it).
 */
export type RunnerEvent = EngineEvent | Exclude<HandoffEvent, { type: 'rebalance' }> | { type: 'change'; phase: 'started' | 'resumed' | 'finished'; added: string[]; removed: string[] }

export interface RunnerOptions extends HandoffJobOptions {
  onEvent?: ((e: RunnerEvent) => void) | undefined
  /** Copy hand-off: resolves once the applications use the new owners. */
  waitForSwitch?: ((ctx: { sources: string[]; removed: string[]; destinations: string[] }) => Promise<void>) | undefined
  /** Milliseconds between progress saves (JOB_DEFAULTS.checkpointIntervalMs). */
  checkpointIntervalMs?: number | undefined
}

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

/** Which servers a change reads, and why: the placement decides. */
export interface ChangeScope {
  hash: string
  /** 'modulo': the owner of keys on servers that stay changes too (hash mod n); 'consistent': only keys of the servers that leave or lose weight move. */
  kind: 'consistent' | 'modulo'
  sources: string[]
  leaving: string[]
  /** Keys to hand over on the servers that leave, and on those that stay (from the first dumps). */
  keysOnLeaving: number
  keysOnStaying: number
  /** Servers that stay and hand over keys. */
  stayingSources: number
}

export interface ChangePlan {
  scope: ChangeScope
  /** Items the sources' first dumps listed (live or not yet reclaimed), over all sources. */
  keysListed: number
  keysToMove: number
  bytesToMove: number
  /** keysToMove / keysListed: the share of the pool's keys that changes owner. */
  fraction: number
  /** The same from placement alone, on synthetic keys; a plan only (dry run): it costs ~50 ms of CPU a job need not pay. */
  estimatedFraction?: number | undefined
  pairs: PlanPair[]
  destinations: PlanDestination[]
  /**
   * At --rate; null when unthrottled. The copy hand-off reads every copied key once more in its
   * catch-up, at the same rate: twice the move's time.
   */
  estimatedSeconds: number | null
}

export interface SourceOutcome extends SourceRecord {
  address: string
  leaving: boolean
  ratio: number
  purged: boolean
  restarted: boolean
}

export interface HandoffOutcome extends JobOutcome {
  handoff: 'move' | 'copy'
  resumed: boolean
  change: ResolvedChange
  record: HandoffRecord
  plan: ChangePlan
  /** This run's figures over every source. */
  tally: Tally
  sources: SourceOutcome[]
  /** Copies re-written because the source changed after they were made: by the follower, the delta pass or the catch-up. */
  caughtUp: number
  /** Copies deleted: gone at the source, both sides changed, or of unknown origin. */
  invalidated: number
  /** Copy hand-off: what following the sources' writes did (included in caughtUp and invalidated), and events it lost. */
  followed: { refreshed: number; invalidated: number; losses: number; unavailable: string[] } | undefined
  staleCopiesDeleted: number
  failedBy: Record<string, number>
  samples: { key: string; reason: string }[]
  passes: number
  durationMs: number
  bytesAtStart: number
  /** Per destination, what the first dumps routed there and its room. */
  preflight: PreflightDestination[]
  switched: boolean
  finished: boolean
  purged: string[]
  sourceRestarted: boolean
}

/** Failures that say a server is down or stalled (not that it refuses): such a source is retried by a rerun. */
const TRANSPORT_CODES = new Set(['SERVER_UNREACHABLE', 'SERVER_TIMEOUT', 'CONNECTION_CLOSED'])

const emptySource = (): SourceRecord => ({ keysAtStart: 0, moved: 0, inPlace: 0, skipped: {}, failed: 0, conflicts: 0, passes: 0 })

/** The sources of removing or reweighting servers: all of them for a modulo placement, else those whose keys change owner. */
export function sourcesOf(previous: Pool, leaving: readonly string[]): string[] {
  const active = activeServers(previous).map((s) => s.address)
  return isModulo(previous.hash) ? active : active.filter((a) => leaving.includes(a))
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

/** A progress save that failed: before the switch the job stops (nothing is flushed) rather than run on without a record. */
function saveFailed(err: unknown): MemdrainError {
  const unreachable = isMemdrainError(err) && (err.code === 'POOL_STORE_UNREACHABLE' || err.code === 'LOCK_LOST' || err.exitCode === ExitCode.interrupted)
  if (unreachable) {
    // Keys are moved one by one with add + CAS delete, so each is in one safe state; only the
    // record's last figures may be missing. A rerun dumps what is left and continues.
    return new MemdrainError(`the job stopped: the pool store became unreachable (${(err as Error).message})`, {
      code: 'INTERRUPTED',
      exitCode: ExitCode.interrupted,
      suggestions: ['Every key is either moved or still on its old owner; run the same command again once the pool store answers, to resume.'],
      cause: err,
    })
  }
  return new MemdrainError(`the job stopped: its progress could not be saved (${(err as Error).message}); nothing was purged`, {
    code: isMemdrainError(err) ? err.code : 'POOL_SAVE_FAILED',
    exitCode: ExitCode.precondition,
    suggestions: ['Every key is either handed over or still on its old owner. Check the pool file (was it edited during the job?), then run the same command again to resume.'],
    cause: err,
  })
}

export async function runPoolChange(change: PoolChange, opts: RunnerOptions): Promise<HandoffOutcome> {
  const emit = opts.onEvent ?? (() => undefined)
  const store: PoolStore = opts.store
  let snap = await store.load()
  let first: ResolvedChange
  try {
    first = change.resolve(snap.pool)
  } catch (err) {
    // A job holding the lock explains the state better ("locked by memdrain drain X, pid N").
    if (!opts.dryRun) await store.lock(change.command).then((l) => l.release())
    throw err
  }
  // Every server this change may read, write or flush, identified by what answers: two spellings
  // of one memcached would count keys as moved to the server that is then flushed.
  await refuseSameServers([...poolSpellings(first.previous, store.location), ...poolSpellings(first.next, 'the new pool')])
  const handoff = opts.handoff ?? first.record?.handoff ?? (first.next.clients === 'pool-aware' ? 'move' : 'copy')
  if (handoff === 'move' && first.next.clients !== 'pool-aware' && first.record?.handoff !== 'move' && opts.force !== true && !opts.dryRun) {
    // Static clients never read the pool file: they keep reading (and writing) the old owner,
    // which the move empties. Measured: 7 % stale and 3 % deleted keys back on 10,000.
    throw refuse(`the pool's clients are "static": the move hand-off would serve them stale and deleted values (they keep using the old server list)`, [
      'Use the copy hand-off (the default for static clients): it copies, waits for the switch of the server list, and catches up.',
      'Or set "clients": "pool-aware" in the pool file if the applications read it (memdrain\'s library); --force moves anyway.',
    ], 'MOVE_ON_STATIC', ExitCode.usage)
  }
  const didWork = first.record !== undefined && (first.record.phase !== undefined || Object.values(first.record.sources).some((r) => r.passes > 0 || r.keysAtStart > 0))
  if (first.record !== undefined && didWork && first.record.handoff === 'copy' && handoff === 'move') {
    // The copies made so far may be stale; the move hand-off takes a copy it finds at a
    // destination for a newer one written by a pool-aware client, and would keep them.
    throw refuse(`this change started with the copy hand-off: resume it with the copy hand-off`, ['Run the same command again with --handoff copy (or without --handoff).'], 'HANDOFF_CHANGED', ExitCode.usage)
  }
  if (handoff === 'copy' && !opts.dryRun && opts.waitForSwitch === undefined) {
    throw refuse('the copy hand-off needs a way to learn when applications have switched', [
      'Pass --switch-command CMD, or --wait-for-switch, or run in a terminal to confirm by hand.',
      "Or use --handoff move if your applications read the pool file (memdrain's library).",
    ], 'USAGE', ExitCode.usage)
  }

  let lock: HeldLock | undefined
  if (!opts.dryRun) lock = await store.lock(change.command)
  // A lock that can no longer be vouched for (etcd unreachable past its lease) stops the job as SIGINT does.
  const outer = withLockLoss(opts.signal, lock)
  // Our own stop (a failed progress save) joins the operator's.
  const stopper = new AbortController()
  const signal = outer === undefined ? stopper.signal : AbortSignal.any([outer, stopper.signal])
  let saveError: unknown
  const journals = new Map<string, CopyJournal>()
  /** The followers of the sources' writes (see CopyFollow), stopped whatever happens. */
  const followsRef = new Map<string, CopyFollow>()
  const journalFile = (source: string): string => copyJournalFile(opts.spoolDir, change.journalScope, source)
  let revisionBeforeMark: string | undefined
  /** The revision this job last wrote; undefined until it wrote one. */
  let written: string | undefined
  let moving = false
  let resolved = first
  /** Set once the final state is written: nothing is saved after it. */
  let ended = false
  try {
    if (!opts.dryRun) {
      snap = await store.load()
      revisionBeforeMark = snap.revision
      resolved = change.resolve(snap.pool)
    }
    const { previous, next, sources, leaving } = resolved
    const resumed = resolved.record !== undefined
    const prevActive = activeServers(previous).map((s) => s.address)
    const pp = poolPlacement(next)
    const targets = pp.servers.map((s) => s.address)
    const added = targets.filter((t) => !prevActive.includes(t))
    const maxChain = Math.max(1, pp.replicas)

    const now = new Date().toISOString()
    let record: HandoffRecord = resolved.record ?? { startedAt: now, updatedAt: now, handoff, threshold: opts.threshold, sources: {} }
    record = { ...record, handoff, threshold: opts.threshold, sources: { ...record.sources } }
    for (const s of sources) record.sources[s] ??= emptySource()
    const phaseAtStart = record.phase
    const switchedBefore = handoff === 'copy' && pastSwitch(phaseAtStart)
    // Bound before the first copy (it is in the first write): a rerun that finds another journal, or none, knows it.
    const storedJournalId = resumed ? record.journalId : undefined
    if (handoff === 'copy' && !opts.dryRun) record.journalId ??= randomUUID()
    record.phase = handoff === 'move' ? 'moving' : (phaseAtStart ?? 'copying')
    const base: Record<string, SourceRecord> = {}
    for (const s of sources) base[s] = { ...record.sources[s]!, skipped: { ...record.sources[s]!.skipped } }

    // Every write of the pool file goes through one queue, so a progress save never lands after the final state.
    let queue: Promise<void> = Promise.resolve()
    const write = (pool: () => Pool): Promise<void> => {
      const run = queue.then(async () => {
        if (ended) return
        snap = { pool: pool(), revision: await store.save(pool(), snap.revision) }
        written = snap.revision
      })
      queue = run.catch(() => undefined)
      return run
    }
    const markedAt = Date.now()
    if (!opts.dryRun) {
      if (handoff === 'copy' && !switchedBefore) {
        for (const s of sources) if (!resumed) removeCopyJournal(journalFile(s)) // left by an earlier change whose record is gone
      }
      await write(() => change.inProgress(snap.pool, resolved, record))
      emit({ type: 'change', phase: resumed ? 'resumed' : 'started', added, removed: leaving })
      for (const r of leaving) emit({ type: 'marked', server: r, state: 'deactivating', resumed })
    }

    // This run's figures per source; the record adds them to what earlier runs did.
    const tallies = new Map<string, Tally>(sources.map((s) => [s, new Tally(targets)]))
    const keysAtStart = new Map<string, number>()
    const passes = new Map<string, number>(sources.map((s) => [s, 0]))
    const live = new Map<string, Tally>()
    const byClients = new Map<string, number>()
    const restarted = new Set<string>()
    /** `err` says the source `s`, a server that stays, is down or stalled (not a destination, not a refusal). */
    const sourceDown = (err: unknown, s: string): err is ServerError => !leaving.includes(s) && isServerError(err) && TRANSPORT_CODES.has(err.code) && err.server === s
    /** Sources that failed (down, stalled, a link cut) before handing over all their keys: the change cannot finish this run. */
    const failedSources = new Set<string>()
    const catchUps = new Map<string, CatchUpResult>()
    const snapshot = (): HandoffRecord => {
      const out: Record<string, SourceRecord> = {}
      for (const s of sources) {
        const b = base[s]!
        const t = new Tally(targets)
        addTally(t, tallies.get(s)!)
        const cur = live.get(s)
        if (cur !== undefined) addTally(t, cur)
        // A key skipped for good (too large, unaddressable) is met again by every run (it stays
        // on the source): keep the larger count rather than a sum that would count it once per
        // run. Gone and expiring keys are not met again: those add up.
        const skipped: Record<string, number> = { ...b.skipped }
        for (const [k, v] of Object.entries(t.skipped)) {
          if (k === 'gone' || k === 'expiring') skipped[k] = (skipped[k] ?? 0) + v
          else if (v > (skipped[k] ?? 0)) skipped[k] = v
          if (skipped[k] === 0) delete skipped[k]
        }
        const r: SourceRecord = {
          keysAtStart: keysAtStart.get(s) ?? b.keysAtStart,
          moved: b.moved + t.moved,
          inPlace: b.inPlace + t.inPlace,
          failed: t.failed + (catchUps.get(s)?.failed ?? 0),
          conflicts: b.conflicts + t.conflicts,
          skipped,
          passes: b.passes + passes.get(s)!,
        }
        // Cumulative over the change (client reports are tagged with its start), so replaced, not added.
        const clients = byClients.get(s) ?? b.movedByClients ?? 0
        if (clients > 0) r.movedByClients = clients
        if (b.caughtUp === true) r.caughtUp = true
        out[s] = r
      }
      return { ...record, updatedAt: new Date().toISOString(), sources: out }
    }
    const refreshMovedByClients = async (): Promise<void> => {
      const sums = await change.movedByClients?.(snap.pool, resolved).catch(() => undefined)
      if (sums !== undefined) for (const [s, n] of sums) if (sources.includes(s)) byClients.set(s, n)
    }
    /** After each save of the record: every source's transitioned ratio (the `transition` events). */
    const saved = (): void => {
      for (const s of sources) emit({ type: 'transition', server: s, ratio: transitionedRatio(record.sources[s]!) })
    }
    const persist = async (): Promise<void> => {
      record = snapshot()
      if (opts.dryRun) return
      await write(() => change.inProgress(snap.pool, resolved, record))
      saved()
    }
    let lastSave = Date.now()
    let saving: Promise<void> = Promise.resolve()
    const checkpoint = (): void => {
      if (opts.dryRun || ended || Date.now() - lastSave < (opts.checkpointIntervalMs ?? JOB_DEFAULTS.checkpointIntervalMs)) return
      lastSave = Date.now()
      saving = saving
        .then(refreshMovedByClients)
        .then(persist)
        .catch((err: unknown) => {
          // Not silent: the job stops here (before the switch nothing is flushed; see saveFailed).
          saveError ??= err
          stopper.abort(err)
        })
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

    // The copy journals (and the keys they cover, which a rerun does not copy again).
    const handled = new Map<string, FingerprintSet>()
    if (handoff === 'copy') {
      for (const s of sources) {
        const set = new FingerprintSet()
        handled.set(s, set)
        if (opts.dryRun) continue
        const file = journalFile(s)
        if (switchedBefore && !existsSync(file) && record.sources[s]!.caughtUp !== true && (record.sources[s]!.moved > 0 || record.sources[s]!.inPlace > 0)) {
          // The phase is in the pool record; the journal is on this machine's disk. Without it the
          // catch-up cannot tell which copies went stale (and adopting what the destinations hold
          // now would delete what the applications wrote there since the switch).
          throw refuse(`the copy journal of ${s} is not in ${file}: the catch-up after the switch needs it`, [
            'Run the command again with the --spool-dir of the run that copied (on the same machine).',
          ], 'JOURNAL_MISSING')
        }
        // Resumed with a journal id: the journal must be this change's; a record without one predates ids.
        const journal = CopyJournal.open(file, targets.join('\n'), (key) => set.add(key), {
          id: record.journalId,
          resume: !resumed ? false : storedJournalId !== undefined ? true : undefined,
        })
        journals.set(s, journal)
        if (journal.lost !== undefined) {
          if (switchedBefore && record.sources[s]!.caughtUp !== true) {
            throw refuse(`${journal.lost}: the catch-up after the switch needs the journal of the run that copied`, [
              'Run the command again with the --spool-dir of the run that copied (on the same machine).',
            ], 'JOURNAL_MISSING')
          }
          if (!switchedBefore) {
            // Before the switch a destination holds a key this source hands over only as an earlier run's copy.
            // The placement the applications use until the switch: the source among its owners (a drain's is deactivating by now).
            const owners = previous.servers.filter((x) => x.state === 'active' || x.address === s)
            const before = poolPlacement({ ...previous, servers: owners }, owners)
            const self = before.servers.findIndex((x) => x.address === s)
            const oldChain: number[] = []
            const newChain: number[] = []
            const { adopted } = await adoptPossibleCopies({
              journal,
              targets,
              handedOver: (key, t) => self >= 0 && before.placement.chain(key, before.replicas, oldChain).includes(self) && pp.placement.chain(key, pp.replicas, newChain).includes(t),
              signal,
            })
            emit({
              type: 'journal-lost',
              source: s,
              adopted,
              message: `${journal.lost}: the ${adopted} key(s) the destinations hold that may be earlier copies from ${s} are compared with it before the switch, and deleted unless identical`,
            })
          }
        }
      }
    }
    // Follow each source's writes from before its first dump until its catch-up is done.
    const follows = followsRef
    const unfollowed: string[] = []
    const stopFollows = async (): Promise<void> => {
      await Promise.all([...follows.values()].map((f) => f.stop()))
    }
    const settleFollows = async (): Promise<void> => {
      await Promise.all([...follows.values()].map((f) => f.settle()))
    }
    if (handoff === 'copy' && !opts.dryRun && !pastSwitchDone(record, sources)) {
      for (const s of sources) {
        const f = await CopyFollow.start({
          source: s,
          targets,
          route: routeFor(s),
          maxChain,
          journal: journals.get(s)!,
          throttle: throttle.keys,
          batchSize: opts.batchSize,
          onEvent: (e) => {
            if (e.state === 'unavailable') unfollowed.push(s)
            emit(e)
          },
        })
        follows.set(s, f)
      }
    }

    // Who each source is now (pid, start time), to tell a restart from a stall if it fails mid-job.
    const identities = new Map<string, SourceIdentity>()
    if (!opts.dryRun) await Promise.all(sources.map(async (s) => sourceIdentity(s).then((id) => identities.set(s, id), () => undefined)))
    // The source failed mid-job. If it restarted (uptime shorter than this job), it came back
    // empty: what was not moved yet is gone, and there is nothing wrong with ending the job.
    // Anything else (still down, stalled, a link cut) is a failure of the keys it still holds:
    // counted failed (source-error), the other sources go on, the record stays for a rerun.
    const onSourceLost = async (source: string, err: Error): Promise<void> => {
      const left = (): number => {
        const rec = snapshot().sources[source]!
        const liveAtStart = rec.keysAtStart - (rec.skipped.gone ?? 0) - (rec.skipped.expiring ?? 0)
        return Math.max(0, liveAtStart - rec.moved - rec.inPlace - (rec.movedByClients ?? 0))
      }
      const failed = (): void => {
        failedSources.add(source)
        const t = tallies.get(source)!
        t.failedBy['source-error'] += left()
        if (t.samples.length < 20) t.samples.push({ key: `(every key left on ${source})`, reason: `source failed: ${err.message}` })
      }
      let now: SourceIdentity | undefined
      for (const until = Date.now() + 5000; now === undefined; ) {
        now = await sourceIdentity(source).catch(() => undefined)
        if (now === undefined) {
          if (Date.now() >= until || signal.aborted) return failed()
          await sleep(250)
        }
      }
      const before = identities.get(source)
      if (before === undefined || (now.pid === before.pid && Math.abs(now.startedAt - before.startedAt) <= 2)) return failed()
      const lost = left()
      tallies.get(source)!.skipped.gone += lost
      restarted.add(source)
      emit({
        type: 'source-restarted',
        server: source,
        uptimeSeconds: now.uptime,
        lost,
        message: `${source} restarted during the job (up ${now.uptime} s, ${err.message.replace(/\.$/, '')}): it came back empty, so its ${lost} key(s) not handed over yet are gone (counted as skipped: gone), not failed`,
      })
    }

    /** One source job: its options, and `end()` once it returned (what its straggling workers send after that is ignored). */
    const sourceJob = (source: string, phase: 'main' | 'sweep', extra: Partial<SourceJobOptions>): { options: SourceJobOptions; end: () => void } => {
      let over = false
      const options: SourceJobOptions = {
        source,
        targets,
        route: routeFor(source),
        maxChain,
        mode: handoff === 'move' ? 'move' : 'copy',
        ...sourceJobSettings(opts),
        signal,
        throttle,
        handled: handled.get(source),
        ...extra,
        onEvent: (e) => {
          if (over) return
          if (phase === 'main' && e.type === 'dumped' && e.pass === 1) {
            listed.set(source, e.entries)
            const b = base[source]!
            if (!resumed || b.keysAtStart === 0) {
              keysAtStart.set(source, e.toMove)
            } else {
              // Resuming: keys deleted or expired at the source since the earlier run will never
              // move. Live now = what earlier runs handed over + what this dump still lists.
              const liveNow = b.moved + b.inPlace + (b.movedByClients ?? 0) + e.toMove
              if (liveNow < b.keysAtStart - (b.skipped.gone ?? 0) - (b.skipped.expiring ?? 0)) {
                keysAtStart.set(source, liveNow)
                delete b.skipped.gone
                delete b.skipped.expiring
              }
            }
          }
          if (e.type === 'phase' && e.phase === 'move') moving = true
          if (e.type === 'progress') {
            live.set(source, e.tally)
            checkpoint()
          }
          // Each source's events as they are: the progress display and the metrics add them up.
          emit(e)
        },
      }
      return { options, end: () => (over = true) }
    }
    const finishJob = async (source: string, end: () => void, job: SourceJobResult): Promise<SourceJobResult> => {
      end()
      await saving
      live.delete(source)
      addTally(tallies.get(source)!, job.tally)
      passes.set(source, passes.get(source)! + job.passes)
      if (job.sourceError !== undefined) await onSourceLost(source, job.sourceError)
      return job
    }

    // 1. The move, or the copy before the switch: every source at once. Each job connects and
    // dumps (prepare), then all wait for the plan (room over every destination) and the grace.
    const listed = new Map<string, number>()
    let interrupted = false
    const started = performance.now()
    /** Time spent waiting for the applications to switch: not part of the job's own duration. */
    let switchWaitMs = 0
    let plan: ChangePlan | undefined
    // What the sources held before anything moved. A source's dump also lists the keys other
    // sources moved into it meanwhile (they move while they dump): the plan counts the keys
    // listed from this when it has it.
    let heldAtStart: { bytes: number; items: number } | undefined
    const atStart = new Map<string, { keys: number; bytes: number; dests: PreflightDestination[] }>()
    const buildPlan = (): ChangePlan => {
      const pairs: PlanPair[] = []
      const destinations: PlanDestination[] = targets.map((address) => ({ address, keys: 0, bytes: 0, freeBytes: 0, limitBytes: 0, itemSizeMax: 0, fits: true, largestItem: 0, itemsFit: true }))
      let keysToMove = 0
      let bytesToMove = 0
      let keysListed = 0
      let keysOnLeaving = 0
      for (const s of sources) {
        const p = atStart.get(s)
        if (p === undefined) continue
        keysListed += listed.get(s) ?? 0
        keysToMove += p.keys
        bytesToMove += p.bytes
        if (leaving.includes(s)) keysOnLeaving += p.keys
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
      if (heldAtStart !== undefined) keysListed = heldAtStart.items
      for (const t of destinations) {
        t.fits = t.bytes <= t.freeBytes
        t.itemsFit = valueFits(t.largestItem ?? 0, t.itemSizeMax)
      }
      const stayingSources = sources.filter((s) => !leaving.includes(s) && (atStart.get(s)?.keys ?? 0) > 0).length
      const moveSeconds = opts.rate > 0 ? keysToMove / opts.rate : null
      return {
        scope: { hash: previous.hash, kind: HASH_INFO[previous.hash].kind, sources, leaving, keysOnLeaving, keysOnStaying: keysToMove - keysOnLeaving, stayingSources },
        keysListed,
        keysToMove,
        bytesToMove,
        fraction: keysListed > 0 ? keysToMove / keysListed : 0,
        ...(opts.dryRun ? { estimatedFraction: estimateMovedFraction(previous, next) } : {}),
        pairs,
        destinations,
        estimatedSeconds: moveSeconds === null ? null : handoff === 'copy' ? 2 * moveSeconds : moveSeconds,
      }
    }

    const neverRan = resolved.markedAt !== undefined
    const graceFrom = neverRan ? Math.min(markedAt, resolved.markedAt!) : markedAt
    // The grace lets pool-aware clients learn the new pool before keys leave their servers;
    // static clients never read the pool, so nobody needs it.
    const graceUntil =
      handoff === 'move' && next.clients === 'pool-aware' && (!resumed || neverRan) && !opts.dryRun ? graceFrom + (opts.clientGraceSeconds ?? JOB_DEFAULTS.clientGraceSeconds) * 1000 : 0
    // Every source that moves while it dumps waits here: the grace is told once.
    let graceTold = false
    const graceOver = async (moveSignal: AbortSignal): Promise<void> => {
      const wait = graceUntil - Date.now()
      if (wait <= 0) return
      if (!graceTold) emit({ type: 'grace', seconds: wait / 1000 })
      graceTold = true
      await sleep(wait, undefined, { signal: moveSignal }).catch(() => undefined)
    }
    const mainJobs: SourceJobResult[] = []
    if (!switchedBefore) {
      // Every source prepared together (connect, first dump): the plan over all of them decides
      // (refuse / proceed) before anything moved. A source may move while it dumps when the
      // destinations have room for everything every source holds (the plan's room check cannot
      // refuse then), once every source's dump is accepted, after the grace (prepareSources).
      const ends = new Map<string, () => void>()
      const group = await prepareSources(
        sources.map((s) => {
          const journal = journals.get(s)
          const { options, end } = sourceJob(s, 'main', {
            dryRun: opts.dryRun,
            ...(journal !== undefined ? { onCopied: (key, t, sc, dc) => journal.append(key, t, sc, dc), writeAhead: journal } : {}),
          })
          ends.set(s, end)
          return options
        }),
        { beforeMove: graceOver },
      )
      const prepared = group.jobs.map((p, i) => {
        const s = sources[i]!
        if (p.status === 'fulfilled') {
          const job = p.value
          atStart.set(s, { keys: job.keysAtStart, bytes: job.bytesAtStart, dests: job.preflight })
          return { status: 'fulfilled' as const, value: { s, end: ends.get(s)!, job } }
        }
        const err: unknown = p.reason
        // A server that stays and cannot be read now (down, stalled): its keys wait for a rerun;
        // the others go on. A refusal (dumps disabled, too old), or the leaving server down, stops the job.
        if (!sourceDown(err, s)) return p
        failedSources.add(s)
        const t = tallies.get(s)!
        if (t.samples.length < 20) t.samples.push({ key: `(every key on ${s})`, reason: `source could not be read: ${err.message}` })
        ends.get(s)!()
        return { status: 'fulfilled' as const, value: undefined }
      })
      const failedPrepare = prepared.find((p) => p.status === 'rejected')
      if (failedPrepare !== undefined) {
        await Promise.all(prepared.map((p) => (p.status === 'fulfilled' ? p.value?.job.cancel() : undefined)))
        throw (failedPrepare as PromiseRejectedResult).reason
      }
      const jobs = prepared.flatMap((p) => {
        const v = (p as PromiseFulfilledResult<{ s: string; end: () => void; job: PreparedSourceJob } | undefined>).value
        return v === undefined ? [] : [v]
      })
      heldAtStart = group.held
      plan = buildPlan()
      emit({ type: 'plan', plan })
      try {
        const short = plan.destinations.filter((d) => !d.fits)
        if (short.length > 0 && !opts.allowEvictions && !opts.dryRun) {
          throw refuse(
            `moving these keys would make ${short.map((d) => d.address).join(', ')} evict: ${short.map((d) => `${d.address} needs ${d.bytes} bytes, has ${d.freeBytes} free`).join('; ')}`,
            ['Add memory or servers first, or pass --allow-evictions to move anyway (the destination then evicts its coldest keys).'],
            'NO_ROOM',
          )
        }
        if (!opts.dryRun && !signal.aborted) record = { ...record, countedAt: record.countedAt ?? new Date().toISOString() }
        if (plan.keysToMove > 0) await graceOver(signal)
      } catch (err) {
        await Promise.all(jobs.map((j) => j.job.cancel()))
        throw err
      }
      const settled = await Promise.allSettled(
        jobs.map(async ({ s, end, job }) => {
          const r = await job.run().catch((err: unknown) => {
            // A server that stays, stalled or cut off mid-job (as a source): its keys wait for a rerun.
            if (!sourceDown(err, s)) {
              // Anything else stops the whole job (a journal that cannot be written, …): the other
              // sources stop too, and the job ends only once they have. A source still copying
              // after the job ended would write copies no journal a rerun reads knows of.
              stopper.abort(err)
              throw err
            }
            const tally = new Tally(targets)
            const last = live.get(s)
            if (last !== undefined) addTally(tally, last)
            return { keysAtStart: job.keysAtStart, bytesAtStart: job.bytesAtStart, passes: 1, tally, interrupted: false, preflight: job.preflight, durationMs: 0, sourceError: err } satisfies SourceJobResult
          })
          return finishJob(s, end, r)
        }),
      )
      const stopped = settled.find((r) => r.status === 'rejected')
      if (stopped !== undefined) throw stopped.reason
      const results = settled.map((r) => (r as PromiseFulfilledResult<SourceJobResult>).value)
      mainJobs.push(...results)
      interrupted = results.some((j) => j.interrupted)
      if (restarted.size > 0 && handoff === 'move' && !interrupted) {
        // Keys written to a restarted source since it came back (clients not yet switched).
        const sweeps = await Promise.all(
          [...restarted].map(async (s) => {
            const { options, end } = sourceJob(s, 'sweep', {})
            return finishJob(s, end, await (await prepareSourceJob(options)).run())
          }),
        )
        interrupted = sweeps.some((j) => j.interrupted)
      }
    }
    if (saveError !== undefined) throw saveFailed(saveError)
    await refreshMovedByClients()
    try {
      await persist()
    } catch (err) {
      throw saveFailed(err)
    }
    plan ??= buildPlan()

    let staleCopiesDeleted = 0
    let staleFailed = 0
    const deltas = new Map<string, CatchUpResult>()
    let recordUnsaved: string | undefined
    /** Set once the switch command returned in this process (not on a resume after the switch). */
    let switchMarks: (bigint | undefined)[] | undefined
    let followed: HandoffOutcome['followed']
    const followedStats = (): HandoffOutcome['followed'] => {
      if (follows.size === 0) return undefined
      const out = { refreshed: 0, invalidated: 0, losses: 0, unavailable: [...unfollowed] }
      for (const f of follows.values()) {
        out.refreshed += f.stats?.refreshed ?? 0
        out.invalidated += f.stats?.invalidated ?? 0
        out.losses += f.losses
      }
      return out
    }
    /**
     * After the switch the keys are safe without any pool write; a store that fails now is said as
     * it is: switched and caught up, only the record is missing (a rerun records it).
     */
    const persistAfterSwitch = async (): Promise<void> => {
      try {
        await persist()
        recordUnsaved = undefined
      } catch (err) {
        throw new MemdrainError(`the copy hand-off is switched and caught up, but ${store.location} could not be written (${(err as Error).message})`, {
          code: 'RECORD_UNSAVED',
          exitCode: ExitCode.interrupted,
          suggestions: ['Run the same command again once the pool store answers: it resumes from the last phase recorded (the switch command may run again: it must be safe to repeat) and records the result.'],
          cause: err,
        })
      }
    }
    // 2. Copy hand-off: the switch, the catch-up, the keys that appeared since, the copies left on staying servers.
    if (handoff === 'copy' && !opts.dryRun && !interrupted && (switchedBefore || (failedSources.size === 0 && change.reached(record, opts.threshold)))) {
      for (const j of journals.values()) j.flush()
      const catchUpRate = opts.rate > 0 ? Math.max(1, Math.ceil(opts.rate / sources.length)) : 0
      const progress = new Map<string, CatchUpResult>()
      const sum = (m: Map<string, CatchUpResult>, k: 'checked' | 'caughtUp' | 'invalidated'): number => [...m.values()].reduce((n, c) => n + c[k], 0)
      /**
       * The catch-up after the switch (or after a switch command stopped half-way): it needs no
       * pool write, and runs to its end whatever happens meanwhile (a SIGINT included; a second
       * one quits at once). `final`: the switch is done, a finished catch-up is recorded.
       */
      const catchUpAll = async (final: boolean): Promise<void> => {
        await settleFollows()
        const pending = sources.filter((s) => record.sources[s]!.caughtUp !== true && base[s]!.caughtUp !== true)
        // What the catch-up checks: the latest record of each copy (an intent and its completion
        // are two records of one copy), as its \`checked\` counts them.
        const totalRecords = pending.reduce((n, s) => n + journals.get(s)!.index.size, 0)
        if (pending.length === 0) return
        emit({ type: 'catch-up', phase: 'start', checked: 0, total: totalRecords, caughtUp: 0, invalidated: 0 })
        await Promise.all(
          pending.map(async (s) => {
            const journal = journals.get(s)!
            // Records the follower appends while a pass runs (a refresh racing it) get one more pass, until none come.
            for (let from = 0, round = 0; round < 10; round++) {
              const upTo = journal.count
              if (round > 0 && upTo <= from) break
              const c = await runCatchUp({
                source: s,
                targets,
                journal,
                rate: catchUpRate,
                batchSize: opts.batchSize,
                inFlight: opts.inFlight,
                downWaitMs: opts.downWaitMs,
                signal: undefined,
                from,
                upTo,
                // Before the switch is known done, copies of unknown outcome stay for the next catch-up.
                keepUnknown: !final,
                // Applications may read the new owners now: copies of keys deleted at the source go first.
                invalidateFirst: true,
                switchMarks: final ? switchMarks : undefined,
                onProgress: (c) => {
                  progress.set(s, c)
                  emit({ type: 'catch-up', phase: 'progress', checked: sum(progress, 'checked'), total: totalRecords, caughtUp: sum(progress, 'caughtUp'), invalidated: sum(progress, 'invalidated') })
                },
              })
              const before = catchUps.get(s)
              catchUps.set(s, before === undefined ? c : addCatchUp(before, c))
              await follows.get(s)?.settle()
              from = upTo
            }
            // A second catch-up would take its re-copies for application writes: recorded per source.
            if (final) base[s] = { ...base[s]!, caughtUp: true }
          }),
        )
        await settleFollows()
        for (const j of journals.values()) j.sync()
        emit({ type: 'catch-up', phase: 'done', checked: sum(catchUps, 'checked'), total: totalRecords, caughtUp: sum(catchUps, 'caughtUp'), invalidated: sum(catchUps, 'invalidated') })
      }
      if (!switchedBefore) {
        // One delta pass right before the switch, over what each journal holds: what following the
        // writes could not see (deletions before memcached 1.6.20, incr/decr, lost events, copies
        // whose answer never came, copies of a lost journal) is refreshed or deleted now.
        await settleFollows()
        emit({ type: 'delta', phase: 'start', checked: 0, caughtUp: 0, invalidated: 0 })
        await Promise.all(
          sources.map(async (s) => {
            const j = journals.get(s)!
            deltas.set(s, await runCatchUp({ source: s, targets, journal: j, rate: catchUpRate, batchSize: opts.batchSize, inFlight: opts.inFlight, downWaitMs: opts.downWaitMs, signal, upTo: j.count, keepUnknown: true }))
          }),
        )
        await settleFollows()
        emit({ type: 'delta', phase: 'done', checked: sum(deltas, 'checked'), caughtUp: sum(deltas, 'caughtUp'), invalidated: sum(deltas, 'invalidated') })
        interrupted = [...deltas.values()].some((d) => d.interrupted) || signal.aborted
        if (!interrupted) {
          // On disk before anything is switched; a journal that cannot be written stops the job here.
          for (const j of journals.values()) j.sync()
          // A pool store that cannot be written stops the job here too, with nothing switched.
          try {
            await persist()
          } catch (err) {
            throw saveFailed(err)
          }
          emit({ type: 'switch', phase: 'waiting' })
          const marker = await prepareSwitchMarks(targets)
          const waitStarted = performance.now()
          try {
            await opts.waitForSwitch!({ sources, removed: leaving, destinations: targets })
            // From here a destination write is the applications' newest: marked, so the refresher and
            // the catch-up keep it instead of deleting a key changed on both sides (switch-marks.ts).
            switchMarks = await marker.take()
          } catch (err) {
            await marker.close()
            if (maybeSwitched(err)) {
              // Some applications may read the new owners already: bring the copies up to date before exiting.
              await catchUpAll(false)
            }
            await persist().catch(() => undefined)
            throw err
          }
          await marker.close()
          switchWaitMs = performance.now() - waitStarted
          for (const f of follows.values()) f.setSwitchMarks(switchMarks)
          record = { ...record, phase: 'switched', switchedAt: new Date().toISOString() }
          emit({ type: 'switch', phase: 'done' })
          await persist().catch((err: unknown) => {
            // The keys are safe without any pool write: the catch-up runs, the record waits for a rerun.
            recordUnsaved = (err as Error).message
            emit({ type: 'record-unsaved', message: `the switch could not be recorded in ${store.location} (${recordUnsaved}): the catch-up runs anyway` })
          })
        }
      }
      if (!interrupted) {
        await catchUpAll(true)
        // A SIGINT after the switch let the catch-up finish; what follows (clean-up, purge) waits for a rerun.
        interrupted = signal.aborted
      }
      followed = followedStats()
      await stopFollows()
      if (!interrupted || [...catchUps.values()].length > 0) {
        // Caught up (even when a SIGINT came meanwhile): recorded, so a rerun goes straight to the clean-up.
        record = { ...snapshot(), phase: 'caught-up' }
        await persistAfterSwitch()
      }
      if (!interrupted) {
        // Keys that appeared on a server that stays since its last copy pass, and that it no
        // longer owns: deleted, not copied (see unowned-keys.ts: a late copy could resurrect a
        // key an application deleted at its new owner after the switch). Servers that leave are
        // purged below.
        const staying = sources.filter((s) => !leaving.includes(s))
        if (staying.length > 0) emit({ type: 'cleanup', phase: 'start', deleted: 0 })
        const after = await Promise.all(
          staying.map((s) => {
            const self = targets.indexOf(s)
            const scratch: number[] = []
            // Repeatable (it deletes what is still there): a server that stalls meanwhile is waited
            // for, and the attempts' deletions add up (into).
            const into = { deleted: 0, failed: 0 }
            return whileNotAnswering(() => deleteUnownedKeys({ source: s, owns: (key) => pp.placement.chain(key, pp.replicas, scratch).includes(self), spoolDir: opts.spoolDir, signal, into }), opts.downWaitMs, signal)
          }),
        )
        for (const a of after) {
          staleCopiesDeleted += a.deleted
          staleFailed += a.failed
        }
        interrupted = signal.aborted
        if (!interrupted) {
          const cleaned = await Promise.all(
            staying.map((s) => {
              const into = { deleted: 0, changed: 0, failed: 0 }
              return whileNotAnswering(() => deleteCopies(journals.get(s)!, { kind: 'source', address: s }, signal, into), opts.downWaitMs, signal)
            }),
          )
          for (const c of cleaned) {
            staleCopiesDeleted += c.deleted
            staleFailed += c.failed
          }
          interrupted = signal.aborted
        }
        if (staying.length > 0) emit({ type: 'cleanup', phase: 'done', deleted: staleCopiesDeleted })
      }
      await refreshMovedByClients()
      await persistAfterSwitch()
    }
    followed ??= followedStats()
    await stopFollows()
    const durationMs = performance.now() - started - switchWaitMs

    const switched = handoff === 'move' || pastSwitch(record.phase)
    const catchUpFailed = [...catchUps.values()].reduce((n, c) => n + c.failed, 0)
    const total = new Tally(targets)
    for (const t of tallies.values()) addTally(total, t)
    // A source that could not be read at all has no count: it fails the job (68) all the same.
    const failed = total.failed + catchUpFailed + staleFailed + (failedSources.size > 0 && total.failed === 0 ? failedSources.size : 0)
    const finished = !opts.dryRun && !interrupted && switched && failedSources.size === 0 && change.reached(record, opts.threshold)
    const purged: string[] = []
    if (finished) {
      if (opts.purge) {
        for (const r of leaving) {
          await flushServer(r, 'server leaving the pool')
          purged.push(r)
          emit({ type: 'purged', server: r })
        }
      }
      record = { ...record, updatedAt: new Date().toISOString() }
      await write(() => change.done(snap.pool, resolved, record))
      saved()
      ended = true
      for (const [s, j] of journals) {
        j.close()
        removeCopyJournal(journalFile(s))
      }
      journals.clear()
      for (const r of leaving) emit({ type: 'marked', server: r, state: 'removed', resumed })
      emit({ type: 'change', phase: 'finished', added, removed: leaving })
    }
    ended = true
    await queue

    const failedBy: Record<string, number> = { ...total.failedBy }
    for (const k of Object.keys(failedBy)) if (failedBy[k] === 0) delete failedBy[k]
    if (catchUpFailed > 0) failedBy['catch-up'] = catchUpFailed
    if (staleFailed > 0) failedBy['stale-copy-delete'] = staleFailed
    const samples = [...total.samples]
    for (const c of catchUps.values()) for (const s of c.samples) if (samples.length < 20) samples.push(s)
    const all = sumSources(sources.map((s) => record.sources[s]!))
    const ratio = transitionedRatio(all)
    const preflight: PreflightDestination[] = plan.destinations.map(({ itemsFit: _f, ...d }) => d)
    const outcome = { dryRun: opts.dryRun, interrupted, finished, failed, ratio, threshold: opts.threshold }
    return {
      ...outcome,
      status: exitCodeFor(outcome),
      handoff,
      resumed,
      change: resolved,
      record,
      plan,
      tally: total,
      sources: sources.map((s) => ({ address: s, leaving: leaving.includes(s), ...record.sources[s]!, ratio: transitionedRatio(record.sources[s]!), purged: purged.includes(s), restarted: restarted.has(s) })),
      caughtUp: [...catchUps.values(), ...deltas.values()].reduce((n, c) => n + c.caughtUp, 0) + (followed?.refreshed ?? 0),
      invalidated: [...catchUps.values(), ...deltas.values()].reduce((n, c) => n + c.invalidated, 0) + (followed?.invalidated ?? 0),
      followed,
      staleCopiesDeleted,
      failedBy,
      samples,
      passes: Math.max(0, ...passes.values()),
      durationMs,
      bytesAtStart: mainJobs.reduce((n, j) => n + j.bytesAtStart, 0),
      preflight,
      switched: !opts.dryRun && switched,
      purged,
      sourceRestarted: restarted.size > 0,
    }
  } catch (err) {
    ended = true
    // A failed progress save is why the job stopped; a store gone mid-move leaves a resumable job.
    const failure = saveError !== undefined ? saveFailed(saveError) : moving && (lock?.lost?.aborted === true || (isMemdrainError(err) && err.code === 'POOL_STORE_UNREACHABLE')) ? saveFailed(err) : err
    // Refused or failed before a key moved (no room, dumps disabled, a server unreachable): put
    // the pool file back as it was, so that nothing is left half-started, but only when it is
    // still the one this job wrote (an edit made meanwhile is someone's, and stays).
    if (written !== undefined && resolved.record === undefined && !moving) {
      try {
        for (const [s, j] of journals) {
          j.close()
          removeCopyJournal(journalFile(s))
        }
        journals.clear()
        const now = await store.load()
        if (now.revision === written) {
          // Give the file back exactly as it was (a person's formatting included) when the store
          // can; otherwise undo just the change.
          const restored = store.restore !== undefined && revisionBeforeMark !== undefined && (await store.restore(revisionBeforeMark, written))
          if (!restored) await store.save(change.undone(now.pool, resolved), now.revision)
          for (const r of resolved.leaving) emit({ type: 'marked', server: r, state: 'active', resumed: false })
        }
      } catch {
        // The refusal matters more; the record stays and a rerun resumes.
      }
    }
    throw failure
  } finally {
    await Promise.all([...followsRef.values()].map((f) => f.stop()))
    for (const j of journals.values()) j.close()
    await lock?.release()
  }
}

/** Whether a failed switch may have switched some applications (the switch command was stopped or failed half-way). */
function maybeSwitched(err: unknown): boolean {
  return isMemdrainError(err) && (err.data as { maybeSwitched?: boolean } | undefined)?.maybeSwitched === true
}

/** Two catch-up passes over one journal, added. */
function addCatchUp(a: CatchUpResult, b: CatchUpResult): CatchUpResult {
  return {
    checked: a.checked + b.checked,
    unchanged: a.unchanged + b.unchanged,
    caughtUp: a.caughtUp + b.caughtUp,
    invalidated: a.invalidated + b.invalidated,
    superseded: a.superseded + b.superseded,
    failed: b.failed,
    interrupted: b.interrupted,
    samples: [...a.samples, ...b.samples].slice(0, 20),
  }
}

/** Every source caught up already: nothing left to follow. */
function pastSwitchDone(record: HandoffRecord, sources: readonly string[]): boolean {
  return record.phase === 'caught-up' || sources.every((s) => record.sources[s]?.caughtUp === true)
}
