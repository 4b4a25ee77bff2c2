import { statfsSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { MemdrainError, ExitCode } from '../errors.js'
import { JOB_DEFAULTS } from '../defaults.js'
import { MetaConnection, metadump, parseAddress, MIN_MEMCACHED_VERSION, type DumpEntry } from '../protocol/index.js'
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
  /** Called after the first dump with what moving would need; throw to refuse (preflight). */
  onPreflight?: ((dests: PreflightDestination[], keys: number, bytes: number) => void | Promise<void>) | undefined
  /** After a pass in which keys failed because a destination was down: wait this long (ms) for it before the next pass. Default 10 s. */
  downWaitMs?: number | undefined
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
   * alongside it (rebalance: every source's `bytes`). Default: this source's `bytes`. When every
   * destination has that much free room, the first pass moves while it dumps.
   */
  bytesBound?: number | Promise<number> | undefined
  /**
   * Called once per pass when the dump lists its first key (or ends with none): the walk was
   * accepted. `streaming`: whether this pass moves while it dumps (else after its preflight).
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

export async function connectChecked(address: string, role: string): Promise<MetaConnection> {
  const conn = await MetaConnection.connect(parseAddress(address))
  try {
    await conn.checkVersion(MIN_MEMCACHED_VERSION)
  } catch (err) {
    await conn.close().catch(() => undefined)
    if (err instanceof MemdrainError) err.message = `${role} ${err.message}`
    throw err
  }
  return conn
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
    const reply = await conn.simple('flush_all')
    if (reply !== 'OK') throw new MemdrainError(`flush_all on ${address} answered ${reply}`, { code: 'PURGE_FAILED', exitCode: ExitCode.failed })
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

const CANCELLED = Symbol('cancelled')

/**
 * Two steps of one source job: prepare() connects and dumps (the plan of every source can then
 * be checked at once: room over every destination, the grace), run() moves. Several sources
 * prepared together share one plan without a hand-made barrier. When the destinations have room
 * for everything (see SourceJobOptions.bytesBound), the first pass already moves while it dumps
 * (after `beforeMove`): prepare() still resolves at the end of the dump with its exact counts,
 * and run() lets the pass finish.
 */
export async function prepareSourceJob(opts: SourceJobOptions): Promise<PreparedSourceJob> {
  let proceed!: (go: boolean) => void
  const gate = new Promise<boolean>((resolve) => (proceed = resolve))
  let reached!: (p: { dests: PreflightDestination[]; keys: number; bytes: number }) => void
  const preflight = new Promise<{ dests: PreflightDestination[]; keys: number; bytes: number }>((resolve) => (reached = resolve))
  const running = runSourceJob({
    ...opts,
    onPreflight: async (dests, keys, bytes) => {
      await opts.onPreflight?.(dests, keys, bytes)
      reached({ dests, keys, bytes })
      if (!(await gate)) throw CANCELLED
    },
  })
  const first = await Promise.race([preflight, running.then((r) => ({ done: r }))])
  if ('done' in first) {
    // Stopped before its preflight (interrupted during the dump).
    return { keysAtStart: first.done.keysAtStart, bytesAtStart: first.done.bytesAtStart, preflight: first.done.preflight, run: () => running, cancel: () => Promise.resolve() }
  }
  return {
    keysAtStart: first.keys,
    bytesAtStart: first.bytes,
    preflight: first.dests,
    run: () => {
      proceed(true)
      return running
    },
    cancel: async () => {
      proceed(false)
      await running.catch((err: unknown) => {
        if (err !== CANCELLED) throw err
      })
    },
  }
}

export async function runSourceJob(opts: SourceJobOptions): Promise<SourceJobResult> {
  const started = performance.now()
  const emit = opts.onEvent ?? (() => undefined)
  const batchSize = opts.batchSize ?? JOB_DEFAULTS.batchSize
  const inFlight = opts.inFlight ?? JOB_DEFAULTS.inFlight
  const maxPasses = opts.maxPasses ?? JOB_DEFAULTS.maxPasses
  const tally = new Tally(opts.targets)
  const guard = new TargetGuard(opts.targets, { minFree: opts.minFree, ...(opts.signal ? { signal: opts.signal } : {}) })
  guard.on('change', (health: DestinationHealth) => emit({ type: 'guard', source: opts.source, health }))

  emit({ type: 'phase', source: opts.source, phase: 'connect', pass: 0 })
  const source = await connectChecked(opts.source, 'source')
  const targetConns: MetaConnection[] = []
  // One connection per target per worker keeps each worker's replies in its own FIFO.
  let stopReconnects = (): void => undefined
  const closeAll = async (): Promise<void> => {
    stopReconnects()
    await guard.stop()
    await Promise.all([source, ...targetConns].map((c) => c.close().catch(() => undefined)))
  }
  try {
    for (const t of opts.targets) targetConns.push(await connectChecked(t, 'destination'))
    await guard.start()
    // A destination whose connection was lost (killed, stalled past the timeout, link reset) is
    // down until a new connection answers; keys for it fail meanwhile (a later pass retries them).
    const lastReconnect = opts.targets.map(() => 0)
    let closing = false
    stopReconnects = () => {
      closing = true
    }
    const reconnect = (i: number): void => {
      if (closing || Date.now() - lastReconnect[i]! < 1000) return
      lastReconnect[i] = Date.now()
      connectChecked(opts.targets[i]!, 'destination').then(
        (c) => {
          if (closing) void c.close()
          else targetConns[i] = c
        },
        () => undefined,
      )
    }
    const targets: TransferTarget[] = opts.targets.map((address, i) => ({
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
      itemSizeMax: () => guard.health.get(address)?.itemSizeMax ?? 1048576,
      clockOffset: () => guard.health.get(address)?.clockOffset ?? 0,
    }))
    const keys = opts.throttle?.keys ?? new TokenBucket(opts.rate)
    const bytes = opts.throttle?.bytes ?? new TokenBucket(opts.bandwidth)
    const result: SourceJobResult = { keysAtStart: 0, bytesAtStart: 0, passes: 0, tally, interrupted: false, preflight: [], durationMs: 0 }
    const handled = opts.handled ?? new FingerprintSet()

    try {
      for (let pass = 1; pass <= maxPasses; pass++) {
        if (opts.signal?.aborted) break
        const sourceStats = await source.stats()
        // A later pass re-dumps only to find keys an earlier dump missed (a live walk misses some):
        // a source that holds no item at all (curr_items counts every linked item, expired ones
        // too) has none a dump could list, so the pass that emptied it was the last. Saves a
        // whole walk (a few hundred ms at 1M keys) at the end of every move.
        if (pass > 1 && Number(sourceStats.get('curr_items')) === 0) break
        emit({ type: 'phase', source: opts.source, phase: 'dump', pass })
        const serverNow = Number(sourceStats.get('time') ?? Math.floor(Date.now() / 1000))
        // The walk, chosen per server and pass: a hash walk lists each key once (no dedupe, flat
        // memory) but must not start while the hash table expands (1.6.18 deadlock: metadump.ts
        // waits for it, seconds after a bulk load); an LRU walk needs no wait but can list a key
        // twice, so the spool then deduplicates it (a fingerprint set, ~11 bytes a key). A hash
        // walk also costs its buckets, full or not (see hashTableSparse): on a sparse table
        // (a later pass, after a move emptied it) the LRU walk is far cheaper.
        const walk = opts.dumpMode ?? (hashTableBusy(sourceStats) || hashTableSparse(sourceStats) ? 'all' : 'hash')
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
        // for it all (the preflight refusal must come before anything moved).
        const stream =
          !opts.dryRun && spoolHasRoom(spool.dir, sourceStats) && (pass > 1 || opts.allowEvictions || (await roomIsCertain(opts, guard, sourceStats)))
        const passAbort = new AbortController()
        const signal = opts.signal === undefined ? passAbort.signal : AbortSignal.any([opts.signal, passAbort.signal])
        // Keys that failed last pass are tried again by this one (moving may start right away).
        if (pass > 1) tally.forgetFailures()
        const before = { moved: tally.moved, inPlace: tally.inPlace, failed: tally.failed }
        let moving: Promise<void> | undefined
        let moveError: unknown
        const startMove = (): Promise<void> => {
          moving ??= (async () => {
            if (pass === 1 && opts.beforeMove !== undefined) await opts.beforeMove(signal)
            if (signal.aborted) return
            await movePass(opts, signal, source, spool, perDest, targets, tally, guard, keys, bytes, batchSize, inFlight, handled, pass, emit)
          })().catch((err: unknown) => {
            // A worker failed (the source went away mid-move): stop the dump too.
            moveError = err
            passAbort.abort()
          })
          return moving
        }
        try {
          const routeScratch = new Int32Array(Math.max(1, opts.maxChain))
          let entries = 0
          const onEntry = (e: DumpEntry): void => {
            if (entries++ === 0) opts.onListing?.(pass, stream)
            if (e.exp !== -1 && e.exp <= serverNow) return
            const n = opts.route(e.key, routeScratch, 0)
            if (n === 0) return
            if (handled.size > 0 && handled.has(e.key)) return
            if (opts.select !== undefined && !opts.select(e)) return
            spool.add(e.key, e.size, e.exp, e.la, routeScratch, n, 0)
            for (let j = 0; j < n; j++) {
              const d = perDest[routeScratch[j]!]!
              d.keys++
              d.bytes += e.size
              if (e.size > d.largest) d.largest = e.size
            }
          }
          const onWalk = (mode: 'hash' | 'all'): void => {
            if (mode === 'all' && walk === 'hash') spool.dedupeWith(dedupe()) // the server has no hash walk
          }
          if (stream) void startMove()
          // Interrupted during the first dump after keys moved: the dump still runs to its end
          // (moves stop at once), so the record counts every key the server had.
          const dumpAbort = new AbortController()
          const stopDump = (): void => {
            if (!(pass === 1 && tally.processed > 0 && !passAbort.signal.aborted)) dumpAbort.abort()
          }
          signal.addEventListener('abort', stopDump, { once: true })
          if (signal.aborted) stopDump()
          const dump = await metadump(parseAddress(opts.source), { onEntry, onWalk, signal: dumpAbort.signal, mode: walk })
            .catch((err: unknown) => {
              if (dumpAbort.signal.aborted) return undefined
              throw err
            })
            .finally(() => {
              signal.removeEventListener('abort', stopDump)
              spool.finish()
            })
          if (entries === 0) opts.onListing?.(pass, stream)
          if (moveError !== undefined) throw moveError
          if (dump !== undefined) {
            emit({
              type: 'dumped',
              source: opts.source,
              pass,
              entries,
              toMove: spool.count,
              bytes: spool.bytes,
              perDestination: opts.targets.map((address, i) => ({ address, keys: perDest[i]!.keys, bytes: perDest[i]!.bytes })),
            })
          }
          if (dump !== undefined && pass === 1) {
            result.keysAtStart = spool.count
            result.bytesAtStart = spool.bytes
          }
          if (opts.signal?.aborted || dump === undefined) {
            await moving
            if (moveError !== undefined) throw moveError
            result.interrupted = true
            break
          }
          if (pass === 1) {
            emit({ type: 'phase', source: opts.source, phase: 'preflight', pass })
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
            await opts.onPreflight?.(result.preflight, spool.count, spool.bytes)
            if (opts.dryRun) break
          }
          if (spool.count === 0) {
            passAbort.abort() // nothing to move: no grace to wait for
            await moving
            break
          }
          result.passes = pass
          await startMove()
          if (moveError !== undefined) throw moveError
          if (opts.signal?.aborted) {
            result.interrupted = true
            break
          }
          const progressed = tally.moved - before.moved + (tally.inPlace - before.inPlace)
          emit({ type: 'pass-done', source: opts.source, pass, moved: tally.moved - before.moved, inPlace: tally.inPlace - before.inPlace, failed: tally.failed - before.failed })
          // A destination that is down (stalled, restarting, link cut) failed keys this pass:
          // give it a bounded time to come back before the next pass tries them again.
          const wasDown = tally.failed > before.failed && pass < maxPasses && !allUp(opts, guard, targetConns)
          if (wasDown) await waitForDestinations(opts, guard, targetConns, targets)
          // Copy mode never empties the source: one pass plus a sweep for keys the first dump missed.
          if (progressed === 0 && !(wasDown && allUp(opts, guard, targetConns))) break
        } catch (err) {
          passAbort.abort()
          await moving
          if (pass === 1 && result.keysAtStart === 0) {
            // Failed during the first dump with keys already moved: what it had listed is the start.
            result.keysAtStart = spool.count
            result.bytesAtStart = spool.bytes
          }
          throw err
        } finally {
          spool.remove()
        }
      }
    } catch (err) {
      // The source went away mid-job: stop here with what was done, and say why.
      if (!source.closed || !(err instanceof MemdrainError) || opts.signal?.aborted === true || (result.preflight.length === 0 && tally.processed === 0)) throw err
      result.sourceError = err
    }
    result.durationMs = performance.now() - started
    return result
  } finally {
    await closeAll()
  }
}

/** Whether the source's hash table is expanding, or due to (memcached expands past 1.5 items a bucket). */
function hashTableBusy(stats: Map<string, string>): boolean {
  const power = Number(stats.get('hash_power_level'))
  const items = Number(stats.get('curr_items'))
  return stats.get('hash_is_expanding') === '1' || (Number.isFinite(power) && Number.isFinite(items) && items > 1.5 * 2 ** power)
}

/**
 * Whether the hash table has far more buckets than items: memcached's hash walk visits every
 * bucket (measured on 1.6.18: ~0.22 µs a bucket, 220 ms for 2^20 and 900 ms for 2^22 buckets
 * holding 200 items, whose LRU walk takes 1–2 ms), while an LRU walk costs per item plus the
 * spool's dedupe (~0.5 µs a key here). Below a quarter of an item per bucket the LRU walk wins.
 */
function hashTableSparse(stats: Map<string, string>): boolean {
  const power = Number(stats.get('hash_power_level'))
  const items = Number(stats.get('curr_items'))
  return Number.isFinite(power) && Number.isFinite(items) && items * 4 < 2 ** power
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
  batchSize: number,
  inFlight: number,
  handled: FingerprintSet,
  pass: number,
  emit: (e: EngineEvent) => void,
): Promise<void> {
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
      },
      batchSize,
    )
    const stopped = (): boolean => signal.aborted
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
      // Failed keys (destination full, down, erroring) stay unhandled: the next pass tries them again.
      for (let i = 0; i < batch.count; i++) {
        if (opts.mode === 'copy' ? transfer.settled(i) : transfer.skippedKey(i)) handled.add(batch.keys, batch.keyStart[i]!, batch.keyEnd[i]!)
        const base = i * batch.maxChain
        for (let j = 0; j < batch.destCount[i]!; j++) doneByDestination[batch.dests[base + j]!]!++
      }
      done += n
      report(false)
    }
  }
  await Promise.all(Array.from({ length: inFlight }, worker))
  report(true)
}

