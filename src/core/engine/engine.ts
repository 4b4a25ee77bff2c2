import { statfsSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { MemdrainError, ExitCode } from '../errors.js'
import { JOB_DEFAULTS } from '../defaults.js'
import { DEFAULT_ITEM_SIZE_MAX, flushNode, isServerError, MemcachedNode, META_CONNECTION_DEFAULTS, MetaConnection, parseAddress, MIN_MEMCACHED_VERSION, type DumpEntry, type MetaConnectionOptions } from '../protocol/index.js'
import { FingerprintSet } from './fingerprint-set.js'
import { KeyBatch } from './key-batch.js'
import { KeySpool, SPOOL_RECORD_MAX, type SpoolOrder } from './spool.js'
import { Tally } from './tally.js'
import { TargetGuard, type DestinationHealth } from './target-guard.js'
import { TokenBucket } from './throttle.js'
import { BatchTransfer, type CopiedFn, type RouteFn, type TransferTarget, type WriteAhead } from './transfer.js'
import type { EngineEvent } from './events.js'

export type { EngineEvent } from './events.js'

/**
 * The engine every job uses, for one source server: dump (to a disk spool, deduplicated,
 * bucketed by recency) → route each key → pipelined transfer under the throttle and the guard
 * → tally; pass after pass until a dump finds nothing left to move.
 */

export interface PreflightDestination {
  address: string
  keys: number
  bytes: number
  freeBytes: number
  limitBytes: number
  itemSizeMax: number
  fits: boolean
  /** Size of the largest item (from the dump) routed here. */
  largestItem?: number | undefined
}

export interface SourceJobOptions {
  source: string
  targets: readonly string[]
  /** Built once the job knows its targets; returns destination indexes into `targets`. */
  route: RouteFn
  maxChain: number
  mode: 'move' | 'copy'
  store: 'add' | 'set'
  order: SpoolOrder
  spoolDir?: string | undefined
  /** keys/s, 0 = unthrottled. */
  rate: number
  /** bytes/s, 0 = unthrottled. */
  bandwidth: number
  minTtl: number
  /** Bytes (≥ 1) or a fraction of the destination's memory (< 1). */
  minFree: number
  allowEvictions: boolean
  batchSize?: number | undefined
  inFlight?: number | undefined
  maxPasses?: number | undefined
  /**
   * Keys a pass does not take again. Copy mode: every key handled (copied, in place or skipped;
   * the source keeps them all). Move mode: keys skipped for good (too large, expiring,
   * unaddressable), so a later pass neither reads nor counts them again.
   */
  handled?: FingerprintSet | undefined
  /**
   * Called once per distinct live key of a dump that route() sends somewhere (and `handled` does
   * not hold); false = leave it this pass. Mirror compares the dump's CAS with the one it copied.
   */
  select?: ((e: DumpEntry) => boolean) | undefined
  signal?: AbortSignal | undefined
  onEvent?: ((e: EngineEvent) => void) | undefined
  /** Copy mode: every copy made (see CopiedFn); with it the destinations answer each write with its CAS. */
  onCopied?: CopiedFn | undefined
  /** Copy mode: journal each copy before it is sent (see WriteAhead). */
  writeAhead?: WriteAhead | undefined
  /** After a pass in which keys failed because a destination was down: wait this long (ms) for it before the next pass. Default 10 s. */
  downWaitMs?: number | undefined
  /**
   * Copy mode: whether a pass that copied keys is followed by a sweep (another dump) for keys
   * written to the source meanwhile. Default true (a copy hand-off: clients still write to the
   * source until the switch). False when writes made meanwhile reach the destination anyway
   * (warm: the warmed server is in the pool): then a complete hash walk in which no key failed
   * ends the job (an LRU walk may miss keys the LRU moved under it, so it is swept).
   */
  sweep?: boolean | undefined
  /** Stop after the dump and preflight (plan / --dry-run). */
  dryRun?: boolean | undefined
  /**
   * Token buckets shared with other jobs running at the same time (rebalance: one global --rate
   * and --bandwidth over every source). Without it the job makes its own from rate/bandwidth.
   */
  throttle?: { keys: TokenBucket; bytes: TokenBucket } | undefined
  /**
   * The walk the dump asks for. Default: per server and pass, `hash` on a steady hash table and
   * `all` (deduplicated) while it expands or is due to (see hashTableBusy), or holds far fewer
   * items than buckets (see hashTableSparse).
   */
  dumpMode?: 'hash' | 'all' | undefined
  /**
   * Most bytes that could be written to any one destination by this job and the jobs moving
   * alongside it (prepareSources: every source's `bytes`). Default: this source's `bytes`. When every
   * destination has that much free room, the first pass moves while it dumps.
   */
  bytesBound?: number | Promise<number> | undefined
  /**
   * Called once per pass when the dump lists its first key (or ends with none): the walk was
   * accepted. `streaming`: whether this pass moves while it dumps (else after its plan).
   * prepareSources sets it (and beforeMove): the sources' barrier.
   */
  onListing?: ((pass: number, streaming: boolean) => void) | undefined
  /** Awaited once before the first key is sent (the client grace); the dump meanwhile goes on. */
  beforeMove?: ((signal: AbortSignal) => Promise<void>) | undefined
}

/** The knobs every job passes to the engine unchanged (throttle, guard, spool, interruption). */
export interface JobKnobs {
  rate: number
  bandwidth: number
  minTtl: number
  minFree: number
  allowEvictions: boolean
  order: SpoolOrder
  spoolDir?: string | undefined
  signal?: AbortSignal | undefined
  batchSize?: number | undefined
  inFlight?: number | undefined
  /** See SourceJobOptions.downWaitMs. */
  downWaitMs?: number | undefined
}

export function jobKnobs(o: JobKnobs): JobKnobs {
  return {
    rate: o.rate,
    bandwidth: o.bandwidth,
    minTtl: o.minTtl,
    minFree: o.minFree,
    allowEvictions: o.allowEvictions,
    order: o.order,
    spoolDir: o.spoolDir,
    signal: o.signal,
    batchSize: o.batchSize,
    inFlight: o.inFlight,
    downWaitMs: o.downWaitMs,
  }
}

export interface SourceJobResult {
  /** Distinct live keys the first dump found that had to move. */
  keysAtStart: number
  bytesAtStart: number
  passes: number
  tally: Tally
  interrupted: boolean
  preflight: PreflightDestination[]
  durationMs: number
  /**
   * The source failed mid-job (connection lost, timed out): the job stopped there and this is
   * why; the tally holds what was done before. The caller decides (a restarted source is empty).
   */
  sourceError?: MemdrainError | undefined
}

export async function connectChecked(address: string, role: string, options?: MetaConnectionOptions): Promise<MetaConnection> {
  const conn = await MetaConnection.connect(parseAddress(address), options)
  try {
    await conn.checkVersion(MIN_MEMCACHED_VERSION)
  } catch (err) {
    await conn.close().catch(() => undefined)
    if (err instanceof MemdrainError) err.message = `${role} ${err.message}`
    throw err
  }
  return conn
}

/** The server did not answer (stalled, restarting, link cut), as opposed to answering with a refusal. */
export function notAnswering(err: unknown): boolean {
  return isServerError(err, 'SERVER_UNREACHABLE') || isServerError(err, 'SERVER_TIMEOUT') || isServerError(err, 'CONNECTION_CLOSED') || isServerError(err, 'NOT_MEMCACHED')
}

/**
 * Runs `step` again while it fails because a server does not answer, for up to `waitMs` after
 * the first failure (what a pass waits out for a destination that is down, see
 * SourceJobOptions.downWaitMs), then throws its error. For steps that can simply be repeated (a
 * connection; the clean-up after a switch, which deletes what is still there): a server paused
 * for a moment must not end a hand-off that a copy pass would have carried on.
 */
export async function whileNotAnswering<T>(step: () => Promise<T>, waitMs: number = JOB_DEFAULTS.downWaitMs, signal?: AbortSignal): Promise<T> {
  let until: number | undefined
  for (;;) {
    try {
      return await step()
    } catch (err) {
      until ??= Date.now() + waitMs
      if (!notAnswering(err) || Date.now() >= until || signal?.aborted === true) throw err
      await sleep(250)
    }
  }
}

/** connectChecked, patient (whileNotAnswering), and its requests may wait as long for their replies: the catch-up's connections. */
export async function connectWaiting(address: string, role: string, waitMs: number = JOB_DEFAULTS.downWaitMs, signal?: AbortSignal): Promise<MetaConnection> {
  const options: MetaConnectionOptions = { requestTimeoutMs: Math.max(META_CONNECTION_DEFAULTS.requestTimeoutMs, waitMs) }
  return whileNotAnswering(() => connectChecked(address, role, options), waitMs, signal)
}

/**
 * What the sources hold together (`bytes` and `curr_items` of `stats`): `bytes` is the
 * `bytesBound` of jobs that move from all of them at once into the same destinations.
 * Undefined when a source cannot say (then the jobs wait for their plan: it only costs time; a
 * source that is really unreachable fails in its job, with the job's error).
 */
export async function heldBy(addresses: readonly string[]): Promise<{ bytes: number; items: number } | undefined> {
  const each = await Promise.all(
    addresses.map(async (address) => {
      try {
        const conn = await MetaConnection.connect(parseAddress(address))
        try {
          const st = await conn.stats()
          return { bytes: Number(st.get('bytes')), items: Number(st.get('curr_items')) }
        } finally {
          await conn.close().catch(() => undefined)
        }
      } catch {
        return { bytes: NaN, items: NaN }
      }
    }),
  )
  const sum = each.reduce((a, b) => ({ bytes: a.bytes + b.bytes, items: a.items + b.items }), { bytes: 0, items: 0 })
  return Number.isFinite(sum.bytes) && Number.isFinite(sum.items) ? sum : undefined
}

/** `flush_all` on exactly one server (after checking it is a memcached memdrain supports). */
export async function flushServer(address: string, role: string): Promise<void> {
  const conn = await connectChecked(address, role)
  try {
    await flushNode(conn, address)
  } finally {
    await conn.close().catch(() => undefined)
  }
}

/**
 * The preflight refusal every job shares: the bytes to write would not fit some destination's
 * free room (it would evict) and the operator did not allow evictions.
 */
export function refuseWithoutRoom(dests: readonly PreflightDestination[], allowEvictions: boolean): void {
  const short = dests.filter((d) => !d.fits)
  if (short.length === 0 || allowEvictions) return
  throw new MemdrainError(
    `moving these keys would make ${short.map((d) => d.address).join(', ')} evict: ${short.map((d) => `${d.address} needs ${d.bytes} bytes, has ${d.freeBytes} free`).join('; ')}`,
    {
      code: 'NO_ROOM',
      exitCode: ExitCode.precondition,
      suggestions: ['Add memory or servers first, or pass --allow-evictions to move anyway (the destination then evicts its coldest keys).'],
    },
  )
}

/** The plans of several sources into the same destinations, added up per destination. */
export function addPreflights(plans: readonly (readonly PreflightDestination[])[]): PreflightDestination[] {
  const sum = new Map<string, PreflightDestination>()
  for (const plan of plans) {
    for (const d of plan) {
      const t = sum.get(d.address)
      if (t === undefined) {
        sum.set(d.address, { ...d })
        continue
      }
      t.keys += d.keys
      t.bytes += d.bytes
      t.largestItem = Math.max(t.largestItem ?? 0, d.largestItem ?? 0)
      t.fits = t.bytes <= t.freeBytes
    }
  }
  return [...sum.values()]
}

/** A source job connected and dumped once: what it would move, and the rest of it to run (or cancel). */
export interface PreparedSourceJob {
  keysAtStart: number
  bytesAtStart: number
  /** Per destination: what the first dump routes there, and its room. Empty when the job stopped before (interrupted). */
  preflight: PreflightDestination[]
  /** Moves (pass after pass); after a dry run, or a job that stopped while dumping, returns at once. */
  run(): Promise<SourceJobResult>
  /** Closes the job: nothing more moves (a job moving while it dumped stops where it is). */
  cancel(): Promise<void>
}

/**
 * Two steps of one source job: prepare() connects and dumps once (the plan of every source can
 * then be checked at once: room over every destination, the grace, a refusal before anything
 * changed), run() moves, pass after pass. When the destinations have room for everything (see
 * SourceJobOptions.bytesBound), the first pass already moves while it dumps (after
 * `beforeMove`): prepare() still resolves at the end of the dump with its exact counts, and run()
 * lets the pass finish. Several sources: prepareSources.
 */
export async function prepareSourceJob(opts: SourceJobOptions): Promise<PreparedSourceJob> {
  const job = new SourceJob(opts)
  const first = await job.prepare()
  const { result } = job
  let ran: Promise<SourceJobResult> | undefined
  return {
    keysAtStart: result.keysAtStart,
    bytesAtStart: result.bytesAtStart,
    preflight: result.preflight,
    run: () => (ran ??= job.run(first)),
    cancel: () => job.cancel(first),
  }
}

/** The sources of one job, each prepared (connected, dumped once) or why it could not be. */
export interface PreparedSources {
  /** Per source, in the order given. */
  jobs: PromiseSettledResult<PreparedSourceJob>[]
  /** What the sources held before anything moved (`stats`), when every one could say. */
  held: { bytes: number; items: number } | undefined
}

/**
 * The sources of one job prepared together (rebalance, a drain of a modulo pool, warm's peers),
 * so that the job decides on the plan of all of them (refuse / confirm / proceed) before
 * anything changed, then runs them. A source may move while it dumps only when the
 * destinations have room for all the sources hold together (`bytesBound`), and even then only
 * once every source's first walk was accepted and every one streams (a source that refuses its
 * dump, -X or the crawler off, or one that must wait for the plan, leaves the refusal before
 * anything moved), and after `beforeMove` (the client grace). Otherwise moving starts with the
 * first run().
 */
export async function prepareSources(list: readonly SourceJobOptions[], o: { beforeMove?: ((signal: AbortSignal) => Promise<void>) | undefined } = {}): Promise<PreparedSources> {
  // Asked alongside the jobs' own start (connect, stats): it adds no wait. A dry run never moves.
  const held = list.some((x) => x.dryRun === true) ? Promise.resolve(undefined) : heldBy(list.map((x) => x.source))
  let listing = 0
  let waitsForPlan = false
  let open!: () => void
  const gate = new Promise<void>((resolve) => (open = resolve))
  const onListing = (pass: number, streaming: boolean): void => {
    if (pass !== 1) return
    if (!streaming) waitsForPlan = true
    if (++listing === list.length && !waitsForPlan) open()
  }
  const beforeMove = async (signal: AbortSignal): Promise<void> => {
    await new Promise<void>((resolve) => {
      if (signal.aborted) return resolve()
      signal.addEventListener('abort', () => resolve(), { once: true })
      void gate.then(resolve)
    })
    await o.beforeMove?.(signal)
  }
  const jobs = await Promise.allSettled(
    list.map(async (opts) => {
      const job = await prepareSourceJob({ ...opts, bytesBound: held.then((h) => h?.bytes ?? Number.POSITIVE_INFINITY), onListing, beforeMove })
      return {
        ...job,
        run: () => {
          open() // decided: every source moves
          return job.run()
        },
      }
    }),
  )
  return { jobs, held: await held }
}

/** One pass between its dump and its move: what the dump spooled, and the move (maybe already started). */
interface Pass {
  n: number
  spool: KeySpool
  /** Aborts this pass's move (and its dump). */
  abort: AbortController
  /** Resolves when the move ends (never rejects: see `error`). */
  startMove(): Promise<void>
  moving: Promise<void> | undefined
  error: unknown
  before: { moved: number; inPlace: number; failed: number }
  /** The walk listed every key the source held throughout (a hash walk to its end). */
  complete: boolean
  /** Keys deferred (TransferOptions.deferred) before this pass. */
  deferredBefore: number
}

/**
 * The transfer's connections: every reply is used inside its callback (values copied into the
 * destinations' batches, CAS digits copied out), so reads can reuse one buffer (no garbage per read).
 */
const BATCH_CONNECTION: MetaConnectionOptions = { reuseReadBuffer: true }

/** The least time between a pass that left source deletes to another mover and the next pass (ms). */
const DEFER_WAIT_MS = 1000

/** One source's job: connect, then passes (dump → move) until a dump finds nothing left to move. */
class SourceJob {
  readonly result: SourceJobResult
  private readonly started = performance.now()
  private readonly emit: (e: EngineEvent) => void
  private readonly maxPasses: number
  private readonly tally: Tally
  private readonly guard: TargetGuard
  private readonly handled: FingerprintSet
  /** Copy mode: the keys the first pass's LRU walk listed, and whether that pass failed no key (see dumpPass). */
  private firstListing: FingerprintSet | undefined
  private firstPassClean = false
  /** The handled set is this job's alone: its first pass need not look (see dumpPass). */
  private readonly ownHandled: boolean
  /** Move mode: keys whose source delete waits for a later pass (see TransferOptions.deferred). */
  private readonly deferred = new FingerprintSet()
  private readonly keys: TokenBucket
  private readonly bytes: TokenBucket
  private source: MetaConnection | undefined
  /** The same source as a node (its dump); the batches go over `source`. */
  private sourceNode: MemcachedNode | undefined
  // One connection per target per worker keeps each worker's replies in its own FIFO.
  private readonly targetConns: MetaConnection[] = []
  private targets: TransferTarget[] = []
  private closing = false

  constructor(private readonly opts: SourceJobOptions) {
    this.emit = opts.onEvent ?? (() => undefined)
    this.maxPasses = opts.maxPasses ?? JOB_DEFAULTS.maxPasses
    this.tally = new Tally(opts.targets)
    this.result = { keysAtStart: 0, bytesAtStart: 0, passes: 0, tally: this.tally, interrupted: false, preflight: [], durationMs: 0 }
    this.guard = new TargetGuard(opts.targets, { minFree: opts.minFree, ...(opts.signal ? { signal: opts.signal } : {}) })
    this.guard.on('change', (health: DestinationHealth) => this.emit({ type: 'guard', source: opts.source, health }))
    this.handled = opts.handled ?? new FingerprintSet()
    this.ownHandled = opts.handled === undefined
    this.keys = opts.throttle?.keys ?? new TokenBucket(opts.rate)
    this.bytes = opts.throttle?.bytes ?? new TokenBucket(opts.bandwidth)
  }

  /**
   * Connects and runs the first pass's dump (and, when it streams, starts its move). Returns the
   * pass to move, or undefined when the job ended here (result final, connections closed).
   */
  async prepare(): Promise<Pass | undefined> {
    this.emit({ type: 'phase', source: this.opts.source, phase: 'connect', pass: 0 })
    this.source = await connectChecked(this.opts.source, 'source', BATCH_CONNECTION)
    this.sourceNode = MemcachedNode.of(this.source)
    try {
      await this.connectTargets()
    } catch (err) {
      await this.close()
      throw err
    }
    if (this.opts.signal?.aborted) return this.end()
    try {
      return (await this.dumpPass(1)) ?? this.end()
    } catch (err) {
      return this.end(err)
    }
  }

  /** The passes from the prepared one on, until one finds nothing left to move. */
  async run(first: Pass | undefined): Promise<SourceJobResult> {
    if (first === undefined) return this.result
    try {
      let pass: Pass | undefined = first
      while (pass !== undefined && (await this.movePass(pass)) && pass.n < this.maxPasses && !this.opts.signal?.aborted) {
        pass = await this.dumpPass(pass.n + 1)
      }
    } catch (err) {
      await this.end(err)
      return this.result
    }
    await this.end()
    return this.result
  }

  async cancel(first: Pass | undefined): Promise<void> {
    if (first === undefined) return
    await this.stopPass(first)
    await this.close()
  }

  /**
   * The job ends (connections closed). A source that went away mid-job (connection lost, timed
   * out) after something was planned or moved ends it with what was done and why; any other
   * failure is thrown.
   */
  private async end(err?: unknown): Promise<undefined> {
    try {
      if (err !== undefined) {
        const { opts, result } = this
        if (!this.source!.closed || !(err instanceof MemdrainError) || opts.signal?.aborted === true || (result.preflight.length === 0 && this.tally.processed === 0)) throw err
        result.sourceError = err
      }
      this.result.durationMs = performance.now() - this.started
    } finally {
      await this.close()
    }
    return undefined
  }

  private async close(): Promise<void> {
    this.closing = true
    await this.guard.stop()
    await Promise.all([this.source, ...this.targetConns].map((c) => c?.close().catch(() => undefined)))
  }

  private async connectTargets(): Promise<void> {
    const { opts, guard, targetConns } = this
    for (const t of opts.targets) targetConns.push(await connectChecked(t, 'destination', BATCH_CONNECTION))
    await guard.start()
    // A destination whose connection was lost (killed, stalled past the timeout, link reset) is
    // down until a new connection answers; keys for it fail meanwhile (a later pass retries them).
    const lastReconnect = opts.targets.map(() => 0)
    const reconnect = (i: number): void => {
      if (this.closing || Date.now() - lastReconnect[i]! < 1000) return
      lastReconnect[i] = Date.now()
      connectChecked(opts.targets[i]!, 'destination', BATCH_CONNECTION).then(
        (c) => {
          if (this.closing) void c.close()
          else targetConns[i] = c
        },
        () => undefined,
      )
    }
    this.targets = opts.targets.map((address, i) => ({
      address,
      get conn() {
        return targetConns[i]!
      },
      state: () => {
        const s = guard.stateOf(address)
        if (s !== 'down' && targetConns[i]!.closed) {
          reconnect(i)
          return 'down'
        }
        return s === 'full' ? 'full' : s === 'down' ? 'down' : 'ok'
      },
      reserve: (itemSize: number) => guard.reserve(i, itemSize),
      settle: (itemSize: number) => guard.settle(i, itemSize),
      itemSizeMax: () => guard.health.get(address)?.itemSizeMax ?? DEFAULT_ITEM_SIZE_MAX,
      clockOffset: () => guard.health.get(address)?.clockOffset ?? 0,
    }))
  }

  /** Stops a pass's move and drops its spool. */
  private async stopPass(p: Pass): Promise<void> {
    p.abort.abort()
    await p.moving
    p.spool.remove()
  }

  /**
   * A pass's dump into its spool (its move starts alongside when it streams); after the first,
   * the plan per destination. Returns the pass to move, or undefined when the job stops here
   * (interrupted, a dry run, nothing to move).
   */
  private async dumpPass(n: number): Promise<Pass | undefined> {
    const { opts, tally, guard, result, handled } = this
    const source = this.source!
    const sourceStats = await source.stats()
    // A later pass re-dumps only to find keys an earlier dump missed (a live walk misses some):
    // a source that holds no item at all (curr_items counts every linked item, expired ones
    // too) has none a dump could list, so the pass that emptied it was the last. Saves a
    // whole walk (a few hundred ms at 1M keys) at the end of every move.
    if (n > 1 && Number(sourceStats.get('curr_items')) === 0) return undefined
    this.emit({ type: 'phase', source: opts.source, phase: 'dump', pass: n })
    const serverNow = Number(sourceStats.get('time') ?? Math.floor(Date.now() / 1000))
    // The walk, chosen per server and pass: a hash walk lists each key once (no dedupe, flat
    // memory) but must not start while the hash table expands (1.6.18 deadlock: metadump.ts
    // waits for it, seconds after a bulk load); an LRU walk needs no wait but can list a key
    // twice, so the spool then deduplicates it (a fingerprint set, ~11 bytes a key).
    // A copy job that need not sweep (SourceJobOptions.sweep: warm) takes the hash walk even then:
    // the wait for the expansion costs less than the second walk an LRU walk needs (it missed a
    // few keys in 150k, moved by the LRU under it, in bench:ratios), and a hash walk lists faster.
    // A hash walk also costs its buckets, full or not (see hashTableSparse): on a sparse table (a
    // later pass, after a move emptied most of it) the LRU walk is far cheaper — except for a job
    // that must list every key in one walk (sweepless).
    const sweepless = opts.mode === 'copy' && opts.sweep === false
    const walk = opts.dumpMode ?? (!sweepless && (hashTableBusy(sourceStats) || hashTableSparse(sourceStats)) ? 'all' : 'hash')
    const dedupe = (): FingerprintSet => new FingerprintSet(Number(sourceStats.get('curr_items')) || 1024)
    // Keys the dump lists per destination (moves may start before it ends: the progress says so far).
    const perDest = opts.targets.map(() => ({ keys: 0, bytes: 0, largest: 0 }))
    // A repeat the deduplicating spool withdraws (it checks in batches) was counted when listed.
    const onDropped = (size: number, dests: readonly number[]): void => {
      for (const i of dests) {
        perDest[i]!.keys--
        perDest[i]!.bytes -= size
      }
    }
    const spool = KeySpool.create({ root: opts.spoolDir, order: opts.order, serverNow, label: opts.source, dedupe: walk === 'all' ? dedupe() : undefined, onDropped })
    // Moving starts while the dump goes on (the spool is a buffer) unless the first pass must
    // first know what it will write: a dry run, or a destination that might not have room
    // for it all (the plan's refusal must come before anything moved).
    const stream = !opts.dryRun && spoolHasRoom(spool.dir, sourceStats) && (n > 1 || opts.allowEvictions || (await roomIsCertain(opts, guard, sourceStats)))
    const abort = new AbortController()
    const signal = opts.signal === undefined ? abort.signal : AbortSignal.any([opts.signal, abort.signal])
    // Keys that failed last pass are tried again by this one (moving may start right away).
    if (n > 1) tally.forgetFailures()
    const pass: Pass = {
      n,
      spool,
      abort,
      moving: undefined,
      error: undefined,
      before: { moved: tally.moved, inPlace: tally.inPlace, failed: tally.failed },
      complete: walk === 'hash',
      deferredBefore: this.deferred.size,
      startMove: () =>
        (pass.moving ??= (async () => {
          if (n === 1 && opts.beforeMove !== undefined) await opts.beforeMove(signal)
          if (signal.aborted) return
          // The last pass deletes every source copy at once: no later pass would.
          const deferred = opts.mode === 'move' && n < this.maxPasses ? this.deferred : undefined
          await movePass(opts, signal, source, spool, perDest, this.targets, tally, guard, this.keys, this.bytes, handled, deferred, n, this.emit)
        })().catch((err: unknown) => {
          // A worker failed (the source went away mid-move): stop the dump too.
          pass.error = err
          abort.abort()
        })),
    }
    let keep = false
    try {
      const routeScratch = new Int32Array(Math.max(1, opts.maxChain))
      // What the first pass handles meanwhile is never listed again by its walk (a hash walk lists
      // a key once; an LRU walk's repeats are dropped by the spool's dedupe): with a set of its
      // own, it need not look. A set given by the caller may hold, or gain meanwhile, keys handled
      // elsewhere (the copy hand-off's journal: earlier runs, the follower's refreshes).
      const checkHandled = n > 1 || !this.ownHandled
      // Copy mode after an LRU walk (which can miss a key the LRU moved under it): the sweep
      // passes that follow need look only at keys the first walk did not list. Every key it
      // listed was routed then and, with no failure, handled or not for any destination, and
      // routing (a placement's hashes) costs more than this lookup.
      let listing: FingerprintSet | undefined
      const listFirstWalk = (): void => {
        if (n === 1 && opts.mode === 'copy' && opts.select === undefined) listing = this.firstListing = dedupe()
      }
      if (walk === 'all') listFirstWalk()
      const known = n > 1 && this.firstPassClean ? this.firstListing : undefined
      let entries = 0
      // Destinations of the key accept() took (routeScratch[0, k)), for its onEntry.
      let k = 0
      // Each key alone first: the rest of its line is read only when this takes it (most of
      // what a peer lists in a warm, for one, belongs elsewhere).
      const accept = (key: Buffer): boolean => {
        if (entries++ === 0) opts.onListing?.(n, stream)
        if (listing !== undefined) listing.add(key)
        else if (known !== undefined && known.has(key)) return false
        k = opts.route(key, routeScratch, 0)
        if (k === 0) return false
        return !(checkHandled && handled.size > 0 && handled.has(key))
      }
      const onEntry = (e: DumpEntry): void => {
        if (e.exp !== -1 && e.exp <= serverNow) return
        if (opts.select !== undefined && !opts.select(e)) return
        spool.add(e.key, e.size, e.exp, e.la, routeScratch, k, 0)
        for (let j = 0; j < k; j++) {
          const d = perDest[routeScratch[j]!]!
          d.keys++
          d.bytes += e.size
          if (e.size > d.largest) d.largest = e.size
        }
      }
      const onWalk = (mode: 'hash' | 'all'): void => {
        if (mode === 'all' && walk === 'hash') {
          spool.dedupeWith(dedupe()) // the server has no hash walk
          pass.complete = false
          listFirstWalk()
        }
      }
      if (stream) void pass.startMove()
      // Interrupted during the first dump after keys moved: the dump still runs to its end
      // (moves stop at once), so the record counts every key the server had.
      const dumpAbort = new AbortController()
      const stopDump = (): void => {
        if (!(n === 1 && tally.processed > 0 && !abort.signal.aborted)) dumpAbort.abort()
      }
      signal.addEventListener('abort', stopDump, { once: true })
      if (signal.aborted) stopDump()
      const dump = await this.sourceNode!.dump({ accept, onEntry, onWalk, signal: dumpAbort.signal, mode: walk })
        .catch((err: unknown) => {
          if (dumpAbort.signal.aborted) return undefined
          throw err
        })
        .finally(() => {
          signal.removeEventListener('abort', stopDump)
          spool.finish()
        })
      if (entries === 0) opts.onListing?.(n, stream)
      if (pass.error !== undefined) throw pass.error
      if (dump !== undefined) {
        this.emit({
          type: 'dumped',
          source: opts.source,
          pass: n,
          entries,
          toMove: spool.count,
          bytes: spool.bytes,
          perDestination: opts.targets.map((address, i) => ({ address, keys: perDest[i]!.keys, bytes: perDest[i]!.bytes })),
        })
        if (n === 1) {
          result.keysAtStart = spool.count
          result.bytesAtStart = spool.bytes
        }
      }
      if (opts.signal?.aborted || dump === undefined) {
        await pass.moving
        if (pass.error !== undefined) throw pass.error
        result.interrupted = true
        return undefined
      }
      if (n === 1) {
        this.emit({ type: 'phase', source: opts.source, phase: 'preflight', pass: n })
        result.preflight = opts.targets.map((address, i) => {
          const h = guard.health.get(address)!
          const d = perDest[i]!
          return {
            address,
            keys: d.keys,
            bytes: d.bytes,
            freeBytes: h.freeBytes,
            limitBytes: h.limitBytes,
            itemSizeMax: h.itemSizeMax,
            fits: d.bytes <= h.freeBytes,
            largestItem: d.largest,
          }
        })
        if (opts.dryRun) return undefined
      }
      if (spool.count === 0) return undefined // nothing to move: no grace to wait for
      keep = true
      return pass
    } catch (err) {
      if (n === 1 && result.keysAtStart === 0) {
        // Failed during the first dump with keys already moved: what it had listed is the start.
        result.keysAtStart = spool.count
        result.bytesAtStart = spool.bytes
      }
      throw err
    } finally {
      if (!keep) await this.stopPass(pass)
    }
  }

  /** A pass's move (to its end); false when the job stops after it. */
  private async movePass(pass: Pass): Promise<boolean> {
    const { opts, tally, guard, result } = this
    try {
      result.passes = pass.n
      await pass.startMove()
      if (pass.error !== undefined) throw pass.error
      if (opts.signal?.aborted) {
        result.interrupted = true
        return false
      }
      const { before } = pass
      if (pass.n === 1) this.firstPassClean = tally.failed === before.failed
      const deferredBefore = pass.deferredBefore
      const progressed = tally.moved - before.moved + (tally.inPlace - before.inPlace)
      this.emit({ type: 'pass-done', source: opts.source, pass: pass.n, moved: tally.moved - before.moved, inPlace: tally.inPlace - before.inPlace, failed: tally.failed - before.failed })
      // A destination that was down (stalled, restarting, link cut) failed keys this pass: give
      // it a bounded time to come back, then the next pass tries them again — also when it came
      // back before the pass ended (failedBy counts this pass's failures: see forgetFailures).
      const wasDown = tally.failedBy['destination-down'] > 0 && pass.n < this.maxPasses
      if (wasDown) await waitForDestinations(opts, guard, this.targetConns, this.targets)
      if (this.deferred.size > deferredBefore && pass.n < this.maxPasses) {
        // Source copies left to another mover: the next pass deletes those still there, after
        // giving that mover (a client between its add and its CAS delete) a moment.
        await sleep(DEFER_WAIT_MS, undefined, opts.signal ? { signal: opts.signal } : undefined).catch(() => undefined)
        return true
      }
      // Copy mode never empties the source: one pass plus a sweep for keys the first dump missed
      // (unless nothing can have been missed: see SourceJobOptions.sweep).
      if (opts.mode === 'copy' && opts.sweep === false && pass.complete && tally.failed === before.failed) return false
      return progressed > 0 || (wasDown && allUp(opts, guard, this.targetConns))
    } finally {
      await this.stopPass(pass)
    }
  }
}

/** Items per bucket of the source's hash table (NaN when its stats do not say). */
function itemsPerBucket(stats: Map<string, string>): number {
  return Number(stats.get('curr_items')) / 2 ** Number(stats.get('hash_power_level'))
}

/** Whether the source's hash table is expanding, or due to (memcached expands past 1.5 items a bucket). */
export function hashTableBusy(stats: Map<string, string>): boolean {
  return stats.get('hash_is_expanding') === '1' || itemsPerBucket(stats) > 1.5
}

/**
 * Whether the hash table has far more buckets than items: memcached's hash walk visits every
 * bucket (measured on 1.6.18: ~0.22 µs a bucket, 220 ms for 2^20 and 900 ms for 2^22 buckets
 * holding 200 items, whose LRU walk takes 1–2 ms), while an LRU walk costs per item plus the
 * spool's dedupe (~0.5 µs a key here). Below a quarter of an item per bucket the LRU walk wins.
 */
function hashTableSparse(stats: Map<string, string>): boolean {
  return itemsPerBucket(stats) < 0.25
}

/**
 * Whether every destination has room for all the bytes that could come its way (the source's
 * whole `bytes`, or `bytesBound` when other sources write to the same destinations): then no
 * preflight can refuse, and the move need not wait for the dump's totals.
 */
async function roomIsCertain(opts: SourceJobOptions, guard: TargetGuard, sourceStats: Map<string, string>): Promise<boolean> {
  const bound = (await opts.bytesBound) ?? Number(sourceStats.get('bytes'))
  if (!Number.isFinite(bound)) return false
  return opts.targets.every((address) => {
    const h = guard.health.get(address)
    return h !== undefined && bound <= h.freeBytes
  })
}

/**
 * Whether the spool's disk has room for every key the source holds at the most a record takes
 * (SPOOL_RECORD_MAX): then a full spool cannot stop the dump after keys started moving.
 */
function spoolHasRoom(dir: string, sourceStats: Map<string, string>): boolean {
  const items = Number(sourceStats.get('curr_items'))
  if (!Number.isFinite(items)) return false
  try {
    const fs = statfsSync(dir)
    return fs.bavail * fs.bsize >= items * SPOOL_RECORD_MAX
  } catch {
    return false
  }
}

function allUp(opts: SourceJobOptions, guard: TargetGuard, conns: readonly MetaConnection[]): boolean {
  return opts.targets.every((address, i) => guard.stateOf(address) !== 'down' && conns[i]?.closed !== true)
}

/** Waits (up to `downWaitMs`, default 10 s) until no destination is down; returns at once if none is. */
async function waitForDestinations(opts: SourceJobOptions, guard: TargetGuard, conns: readonly MetaConnection[], targets: readonly TransferTarget[]): Promise<void> {
  const until = Date.now() + (opts.downWaitMs ?? JOB_DEFAULTS.downWaitMs)
  while (!allUp(opts, guard, conns) && Date.now() < until && opts.signal?.aborted !== true) {
    // Asking a target its state reconnects it when its connection is closed and the guard sees it up.
    for (const t of targets) t.state()
    await sleep(250)
  }
}

async function movePass(
  opts: SourceJobOptions,
  signal: AbortSignal,
  source: MetaConnection,
  spool: KeySpool,
  listed: readonly { keys: number }[],
  targets: TransferTarget[],
  tally: Tally,
  guard: TargetGuard,
  keys: TokenBucket,
  bytes: TokenBucket,
  handled: FingerprintSet,
  deferred: FingerprintSet | undefined,
  pass: number,
  emit: (e: EngineEvent) => void,
): Promise<void> {
  const batchSize = opts.batchSize ?? JOB_DEFAULTS.batchSize
  const inFlight = opts.inFlight ?? JOB_DEFAULTS.inFlight
  const reader = spool.reader()
  const startedAt = performance.now()
  const processedAtStart = tally.processed
  let lastEmit = 0
  // Keys of this pass handled, in all and per destination: what the progress display counts
  // against the dump's totals (moved, in place, failed and skipped alike).
  let done = 0
  const doneByDestination = targets.map(() => 0)
  const report = (force: boolean): void => {
    const now = performance.now()
    if (!force && now - lastEmit < 250) return
    lastEmit = now
    const secs = (now - startedAt) / 1000
    emit({
      type: 'progress',
      source: opts.source,
      pass,
      // While the dump still runs (the move streams behind it) this is what it listed so far.
      toMove: spool.count,
      done,
      doneByDestination,
      listedByDestination: listed.map((d) => d.keys),
      tally,
      keysPerSecond: secs > 0 ? (tally.processed - processedAtStart) / secs : 0,
      rateFactor: guard.rateFactor(),
      rate: keys.rate > 0 ? keys.effectiveRate : 0,
      health: guard.health,
    })
  }
  let started = false
  const worker = async (): Promise<void> => {
    const batch = new KeyBatch(batchSize, Math.max(1, opts.maxChain))
    const transfer = new BatchTransfer(
      {
        source,
        targets,
        route: opts.route,
        maxChain: opts.maxChain,
        mode: opts.mode,
        store: opts.store,
        minTtl: opts.minTtl,
        tally,
        onCopied: opts.onCopied,
        writeAhead: opts.writeAhead,
        deferred,
      },
      batchSize,
    )
    const stopped = (): boolean => signal.aborted
    const handledFps = new Uint32Array(2 * batchSize)
    const handledFresh = new Uint8Array(batchSize)
    while (!signal.aborted) {
      // Pause while the guard says a destination is under memory pressure it cannot shake off.
      while (guard.rateFactor() === 0 && !signal.aborted) {
        report(true)
        await sleep(250)
      }
      const n = await reader.nextBatch(batch, stopped)
      if (n === 0) break
      // The move phase starts with its first key (a dump that fails at once moved nothing).
      if (!started) {
        started = true
        emit({ type: 'phase', source: opts.source, phase: 'move', pass })
      }
      const f = guard.rateFactor()
      keys.factor = f
      bytes.factor = f
      await keys.take(n, signal)
      await bytes.take(batch.totalSize(), signal)
      await transfer.run(batch)
      // Failed keys (destination full, down, erroring) stay unhandled: the next pass tries them
      // again. The handled ones go into the set together (addAll: their cache misses overlap).
      let h = 0
      for (let i = 0; i < batch.count; i++) {
        if (opts.mode === 'copy' ? transfer.settled(i) : transfer.skippedKey(i)) FingerprintSet.fingerprint(batch.keys, batch.keyStart[i]!, batch.keyEnd[i]!, handledFps, 2 * h++)
        const base = i * batch.maxChain
        for (let j = 0; j < batch.destCount[i]!; j++) doneByDestination[batch.dests[base + j]!]!++
      }
      if (h > 0) handled.addAll(handledFps, h, handledFresh)
      done += n
      report(false)
    }
  }
  await Promise.all(Array.from({ length: inFlight }, worker))
  report(true)
}

