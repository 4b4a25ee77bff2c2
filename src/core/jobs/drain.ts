import { ExitCode, refuse } from '../errors.js'
import { isModulo } from '../placement/registry.js'
import { JOB_DEFAULTS } from '../defaults.js'
import { activeServers, findServer, withServer, type Pool, type PoolServer, type SourceRecord, type TransitionRecord } from '../pool/model.js'
import { sumStoreMigrations } from '../pool/client-reports.js'
import type { PoolStore } from '../pool/store.js'
import { sumSources, transitionedRatio } from '../pool/transition.js'
import { runPoolChange, sourcesOf, type ChangePlan, type HandoffEvent, type HandoffOutcome, type HandoffRecord, type PoolChange, type ResolvedChange, type RunnerOptions, type SourceOutcome } from '../handoff/index.js'
import type { EngineEvent, PreflightDestination } from '../engine/index.js'

export { transitionedCounts, transitionedRatio, type TransitionCounts } from '../pool/transition.js'

/**
 * drain: the pool change "remove S". Its own presentation: S's transition record in the pool
 * file (S `deactivating`, then `removed`), the threshold over S's record and the purge of S.
 *
 * Which servers are sources follows from the placement: a consistent one (ketama ring,
 * rendezvous) changes only S's keys, so S alone is read; a modulo one (`hash mod n`: memjs,
 * php-memcached's default, …) changes the owner of most keys on the servers that stay too, so
 * every server is a source and the transitioned ratio counts all of them. The runner
 * (handoff/runner.ts) does the rest, as for a rebalance.
 */

export interface DrainOptions extends Omit<RunnerOptions, 'onEvent' | 'waitForSwitch'> {
  /** Address (or twemproxy name) of the server to drain. */
  server: string
  onEvent?: ((e: EngineEvent | DrainEvent) => void) | undefined
  /** Copy hand-off: resolves once the applications read the new owners (switch command, prompt, or traffic watch). */
  /** `sources`: the servers keys were copied from (the drained one; every server of a modulo pool). */
  waitForSwitch?: ((ctx: { source: string; sources: string[]; destinations: string[] }) => Promise<void>) | undefined
}

/** What a drain emits besides the engine's events (see engine/events.ts); its marks say what `rebalance` says for a rebalance. */
export type DrainEvent = Exclude<HandoffEvent, { type: 'rebalance' }>

export interface DrainResult {
  server: string
  handoff: 'move' | 'copy'
  dryRun: boolean
  state: PoolServer['state']
  resumed: boolean
  /** Which servers hand over keys, and how many on each side (see ChangeScope). */
  scope: ChangePlan['scope']
  keysAtStart: number
  bytesAtStart: number
  moved: number
  inPlace: number
  movedByClients: number
  conflicts: number
  /** Copy hand-off: copies re-written because the source changed after they were made (follower, delta pass before the switch, catch-up after it). */
  caughtUp: number
  /** Copy hand-off: copies deleted (the source deleted the key, both sides changed, or the copy's origin was unknown). */
  invalidated: number
  /** Copy hand-off: what following the source's writes did (part of caughtUp and invalidated), events it lost, sources it could not follow. */
  followed?: HandoffOutcome['followed']
  /** Copy hand-off of a modulo pool: copies and unowned keys deleted from the servers that stay. */
  staleCopiesDeleted: number
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
  /** Per source server (S alone, or every server of a modulo pool). */
  sources: SourceOutcome[]
  plan: ChangePlan
  samples: { key: string; reason: string }[]
  interrupted: boolean
  /**
   * A source restarted during the drain (its uptime is shorter than the drain): it came back
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
  const other = pool.servers.find((x) => x.state === 'deactivating' && x.address !== s.address)
  if (other !== undefined && isModulo(pool.hash)) {
    // Modulo: every key's owner depends on the server count, so a second drain would compute
    // owners from a pool the first is still changing (a ring changes only the drained server's keys).
    throw refuse(`${other.address} is being drained (deactivating): finish or abandon that drain first`, [
      `Run \`memdrain drain ${other.address}\` to finish it, or \`memdrain mark ${other.address} active\` to abandon it.`,
    ], 'DRAIN_IN_PROGRESS')
  }
  const remaining = activeServers(pool).filter((x) => x.address !== s.address)
  if (remaining.length === 0) {
    throw refuse(`${s.address} is the last active server: its keys would have nowhere to go`, ['Add a server to the pool first (memdrain rebalance --add ADDR).'], 'LAST_ACTIVE_SERVER')
  }
  if (pool.replicas > remaining.length) {
    throw refuse(`the pool keeps ${pool.replicas} copies of each key but only ${remaining.length} server(s) would remain`, ['Lower "replicas" in the pool file, or add a server first.'], 'TOO_FEW_SERVERS')
  }
  return s
}

/** S's transition record from the runner's figures: their sum, with the per-source figures when S is not the only source. */
function toTransition(rec: HandoffRecord, server: string): TransitionRecord {
  const sources = Object.keys(rec.sources)
  const sum = sumSources(Object.values(rec.sources))
  const t: TransitionRecord = {
    startedAt: rec.startedAt,
    updatedAt: rec.updatedAt,
    keysAtStart: sum.keysAtStart,
    moved: sum.moved,
    inPlace: sum.inPlace,
    movedByClients: sum.movedByClients,
    skipped: sum.skipped,
    failed: sum.failed,
    conflicts: sum.conflicts,
    threshold: rec.threshold,
    handoff: rec.handoff,
    passes: sum.passes,
  }
  if (rec.phase !== undefined) t.phase = rec.phase
  if (rec.switchedAt !== undefined) t.switchedAt = rec.switchedAt
  if (rec.countedAt !== undefined) t.countedAt = rec.countedAt
  if (rec.journalId !== undefined) t.journalId = rec.journalId
  if (sources.length > 1 || (sources.length === 1 && sources[0] !== server)) t.sources = rec.sources
  return t
}

function fromTransition(t: TransitionRecord, server: string): HandoffRecord {
  const { startedAt, updatedAt, handoff, threshold, phase, switchedAt, countedAt } = t
  const own: SourceRecord = { keysAtStart: t.keysAtStart, moved: t.moved, inPlace: t.inPlace, skipped: t.skipped, failed: t.failed, conflicts: t.conflicts, passes: t.passes, movedByClients: t.movedByClients }
  if (phase === 'caught-up') own.caughtUp = true
  const rec: HandoffRecord = { startedAt, updatedAt, handoff, threshold, phase, switchedAt, countedAt, sources: t.sources ?? { [server]: own } }
  if (t.journalId !== undefined) rec.journalId = t.journalId
  return rec
}

/** The pool change "remove `server`" from the pool in `store`, for the runner. */
export function drainChange(server: string, store: PoolStore): PoolChange {
  const location = store.location
  let address = server
  return {
    command: `memdrain drain ${server}`,
    journalScope: location,
    resolve(pool: Pool): ResolvedChange {
      const s = checkDrainable(pool, server, location)
      address = s.address
      // Before: the active servers and S, in file order (S deactivating on a resume); after: without S.
      const before = pool.servers.filter((x) => x.state === 'active' || x.address === s.address).map((x) => (x.address === s.address ? { ...x, state: 'active' as const, transition: undefined } : x))
      const previous: Pool = { ...pool, servers: before }
      const next: Pool = { ...pool, servers: before.filter((x) => x.address !== s.address) }
      const t = s.state === 'deactivating' ? s.transition : undefined
      // A transition started by `memdrain mark` and never run counts its grace from the mark.
      const neverRan = t !== undefined && t.passes === 0 && t.keysAtStart === 0 && t.phase === undefined
      return {
        previous,
        next,
        sources: sourcesOf(previous, [s.address]),
        leaving: [s.address],
        record: t === undefined ? undefined : fromTransition(t, s.address),
        markedAt: neverRan ? Date.parse(t.startedAt) || undefined : undefined,
      }
    },
    inProgress: (pool, _c, rec) => withServer(pool, address, (x) => ({ ...x, state: 'deactivating', transition: toTransition(rec, address) })),
    done: (pool, _c, rec) => withServer(pool, address, (x) => ({ ...x, state: 'removed', transition: { ...toTransition(rec, address), finishedAt: new Date().toISOString() } })),
    undone: (pool) => withServer(pool, address, (x) => ({ ...x, state: 'active', transition: undefined })),
    reached: (rec, threshold) => transitionedRatio(sumSources(Object.values(rec.sources))) >= threshold,
    movedByClients: async (pool) => {
      // Keys moved off S by pool-aware clients during this transition (their reports: beside a pool file, or in etcd).
      const sums = await sumStoreMigrations(store, pool)
      return new Map([[address, sums.get(address) ?? 0]])
    },
  }
}

export async function runDrain(opts: DrainOptions): Promise<DrainResult> {
  const emit = opts.onEvent ?? (() => undefined)
  const change = drainChange(opts.server, opts.store)
  const { onEvent: _e, waitForSwitch, ...rest } = opts
  const o = await runPoolChange(change, {
    ...rest,
    onEvent: (e) => {
      if (e.type !== 'change') emit(e)
    },
    waitForSwitch: waitForSwitch === undefined ? undefined : (ctx) => waitForSwitch({ source: ctx.removed[0]!, sources: ctx.sources, destinations: ctx.destinations }),
  })
  const server = o.change.leaving[0]!
  const t = toTransition(o.record, server)
  const secs = o.durationMs / 1000
  return {
    server,
    handoff: o.handoff,
    dryRun: o.dryRun,
    state: o.finished ? 'removed' : opts.dryRun && !o.resumed ? 'active' : 'deactivating',
    resumed: o.resumed,
    scope: o.plan.scope,
    keysAtStart: t.keysAtStart,
    bytesAtStart: o.bytesAtStart,
    moved: t.moved,
    inPlace: t.inPlace,
    movedByClients: t.movedByClients,
    conflicts: t.conflicts,
    caughtUp: o.caughtUp,
    ...(o.followed !== undefined ? { followed: o.followed } : {}),
    invalidated: o.invalidated,
    staleCopiesDeleted: o.staleCopiesDeleted,
    skipped: t.skipped,
    failed: o.failed,
    failedBy: o.failedBy,
    bytes: o.tally.bytes,
    ratio: o.ratio,
    threshold: o.threshold,
    purged: o.purged.includes(server),
    passes: o.passes,
    durationSeconds: secs,
    keysPerSecond: secs > 0 ? o.tally.processed / secs : 0,
    destinations: o.tally.perDestination.map((d) => ({ ...d })),
    preflight: o.preflight,
    sources: o.sources,
    plan: o.plan,
    samples: o.samples,
    interrupted: o.interrupted,
    sourceRestarted: o.sourceRestarted,
    status: o.status,
  }
}

/** `memdrain plan SERVER`: what draining SERVER would move, from where to where, whether it fits, and how long it takes. */
export interface DrainPlan extends ChangePlan {
  server: string
  handoff: 'move' | 'copy'
  /** keys/s the estimate assumes (0 = unthrottled: no estimate). */
  rate: number
  status: number
}

/** Plans a drain (every source dumped once, nothing written): the planning code and plan shape of `rebalance --dry-run`. */
export async function planDrain(opts: Omit<DrainOptions, 'dryRun' | 'purge' | 'threshold' | 'waitForSwitch'> & Partial<Pick<DrainOptions, 'threshold'>>): Promise<DrainPlan> {
  const result = await runDrain({ ...opts, threshold: opts.threshold ?? JOB_DEFAULTS.threshold, purge: false, dryRun: true })
  return { server: result.server, handoff: result.handoff, rate: opts.rate, ...result.plan, status: result.status }
}
