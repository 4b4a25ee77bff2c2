import { ExitCode, refuse } from '../errors.js'
import { activeServers, pastSwitch, type Pool, type RebalanceRecord } from '../pool/model.js'
import { poolPlacement } from '../pool/placement.js'
import { hasEdits, placesLike, targetPool, type PoolEdits } from '../pool/rebalance-target.js'
import type { PoolStore } from '../pool/store.js'
import { transitionedRatio } from '../pool/transition.js'
import { CopyJournal, copyJournalFile, deleteCopies, removeCopyJournal, runPoolChange, type ChangePlan, type HandoffJobOptions, type PlanDestination, type PlanPair, type PoolChange, type ResolvedChange, type SourceOutcome, type HandoffOutcome } from '../handoff/index.js'
import { whileNotAnswering, type EngineEvent } from '../engine/index.js'
import { JOB_DEFAULTS } from '../defaults.js'
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
  /** `sources`: every server keys were copied from; `removed`: those leaving (none when only adding). */
  waitForSwitch?: ((ctx: { removed: string[]; sources: string[]; destinations: string[] }) => Promise<void>) | undefined
}

/** What a rebalance emits besides the engine's events (see engine/events.ts). */
export type RebalanceEvent = HandoffEvent

/** The plan of a rebalance: the one plan shape of every pool change (`memdrain plan`, `drain --dry-run`). */
export type RebalancePlan = ChangePlan
export type { PlanPair, PlanDestination }

export type RebalanceSourceResult = SourceOutcome

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
  /** Copy hand-off: what following the sources' writes did (part of caughtUp and invalidated), events it lost, sources it could not follow. */
  followed?: HandoffOutcome['followed']
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
  return copyJournalFile(spoolDir, rebalanceChange({ add: [], remove: [], weight: [] }, location).journalScope, source)
}

/** The pool change a rebalance makes, for the runner. */
export function rebalanceChange(edits: PoolEdits, location: string): PoolChange {
  return {
    command: 'memdrain rebalance',
    journalScope: `${location}#rebalance`,
    resolve(pool: Pool): ResolvedChange {
      const r = resolveTarget(pool, edits, location)
      const prevActive = activeServers(r.previous).map((s) => s.address)
      const nextActive = activeServers(r.next).map((s) => s.address)
      // Every server of the previous pool is a source: an added server or a new weight takes keys from all of them.
      return { previous: r.previous, next: r.next, sources: prevActive, leaving: prevActive.filter((a) => !nextActive.includes(a)), record: r.record }
    },
    // The pool file during the rebalance is the new pool (servers leaving it `deactivating`) plus the record.
    inProgress: (pool, c, rec) => ({ ...(pool.rebalance === undefined ? c.next : pool), rebalance: { ...rec, previous: c.previous } }),
    done: (pool, c) => {
      const final: Pool = { ...c.next, servers: pool.servers.map((s) => (c.leaving.includes(s.address) ? { ...s, state: 'removed' as const } : s)) }
      delete (final as { rebalance?: unknown }).rebalance
      return final
    },
    undone: (pool, c) => pool.rebalance?.previous ?? c.previous,
    reached: (rec, threshold) => Object.values(rec.sources).every((r) => transitionedRatio(r) >= threshold),
  }
}

export async function runRebalance(opts: RebalanceOptions): Promise<RebalanceResult> {
  const emit = opts.onEvent ?? (() => undefined)
  const { onEvent: _e, waitForSwitch, edits, ...rest } = opts
  const o = await runPoolChange(rebalanceChange(edits, opts.store.location), {
    ...rest,
    onEvent: (e) => {
      if (e.type === 'change') emit({ type: 'rebalance', phase: e.phase, added: e.added, removed: e.removed })
      else emit(e)
    },
    waitForSwitch: waitForSwitch === undefined ? undefined : (ctx) => waitForSwitch({ removed: ctx.removed, sources: ctx.sources, destinations: ctx.destinations }),
  })
  const { previous, next } = o.change
  const prevActive = activeServers(previous)
  const nextActive = activeServers(next)
  const targets = poolPlacement(next).servers.map((s) => s.address)
  const secs = o.durationMs / 1000
  const sum = (k: 'moved' | 'inPlace' | 'conflicts'): number => o.sources.reduce((n, r) => n + r[k], 0)
  const skipped: Record<string, number> = {}
  for (const r of o.sources) for (const [k, v] of Object.entries(r.skipped)) skipped[k] = (skipped[k] ?? 0) + v
  return {
    handoff: o.handoff,
    dryRun: o.dryRun,
    resumed: o.resumed,
    hash: next.hash,
    previousServers: prevActive.map((s) => s.address),
    servers: targets,
    added: nextActive.filter((s) => !prevActive.some((p) => p.address === s.address)).map((s) => s.address),
    removed: o.change.leaving,
    reweighted: nextActive.filter((s) => prevActive.some((p) => p.address === s.address && p.weight !== s.weight)).map((s) => s.address),
    plan: o.plan,
    sources: o.sources,
    destinations: o.tally.perDestination.map((d) => ({ ...d })),
    moved: sum('moved'),
    inPlace: sum('inPlace'),
    conflicts: sum('conflicts'),
    caughtUp: o.caughtUp,
    ...(o.followed !== undefined ? { followed: o.followed } : {}),
    invalidated: o.invalidated,
    staleCopiesDeleted: o.staleCopiesDeleted,
    failed: o.failed,
    failedBy: o.failedBy,
    skipped,
    bytes: o.tally.bytes,
    ratio: o.ratio,
    threshold: o.threshold,
    switched: o.switched,
    finished: o.finished,
    durationSeconds: secs,
    keysPerSecond: secs > 0 ? o.tally.processed / secs : 0,
    samples: o.samples,
    interrupted: o.interrupted,
    status: o.status,
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
    if (pastSwitch(record.phase)) {
      throw refuse(`the applications switched to the new pool at ${record.switchedAt ?? 'an earlier run'}: going back now would serve what they wrote since from nowhere, or stale copies`, back, 'ABORT_REFUSED')
    }
    const targets = poolPlacement(snap.pool).servers.map((s) => s.address)
    let copiesDeleted = 0
    let copiesKept = 0
    let failed = 0
    for (const s of activeServers(record.previous)) {
      const file = journalFileOf(spoolDir, store.location, s.address)
      const journal = CopyJournal.open(file, targets.join('\n'))
      try {
        // Repeatable (a copy already deleted answers NF): a destination that stalls is waited for.
        const into = { deleted: 0, changed: 0, failed: 0 }
        const r = await whileNotAnswering(() => deleteCopies(journal, { kind: 'destinations', addresses: targets }, signal, into), JOB_DEFAULTS.downWaitMs, signal)
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
