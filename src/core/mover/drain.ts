import { MemdrainError, ExitCode } from '../errors.js'
import { activeServers, findServer, withServer, type Pool, type PoolServer, type TransitionRecord } from '../pool/model.js'
import { poolPlacement } from '../pool/placement.js'
import type { PoolStore } from '../pool/store.js'
import type { HeldLock } from '../pool/lock.js'
import { connectChecked, runSourceJob, type EngineEvent, type PreflightDestination } from './engine.js'
import type { SpoolOrder } from './spool.js'
import type { RouteFn } from './transfer.js'
import type { Tally } from './tally.js'

export interface DrainOptions {
  store: PoolStore
  /** Address (or twemproxy name) of the server to drain. */
  server: string
  handoff?: 'move' | 'copy' | undefined
  threshold: number
  purge: boolean
  rate: number
  bandwidth: number
  minTtl: number
  minFree: number
  allowEvictions: boolean
  order: SpoolOrder
  spoolDir?: string | undefined
  dryRun: boolean
  signal?: AbortSignal | undefined
  onEvent?: ((e: EngineEvent | DrainEvent) => void) | undefined
  /** Copy hand-off: resolves once the applications read the new owners (switch command, prompt, or traffic watch). */
  waitForSwitch?: ((ctx: { source: string; destinations: string[] }) => Promise<void>) | undefined
  batchSize?: number | undefined
  inFlight?: number | undefined
}

export type DrainEvent =
  | { type: 'marked'; server: string; state: 'deactivating' | 'removed'; resumed: boolean }
  | { type: 'switch'; phase: 'waiting' | 'done' }
  | { type: 'purged'; server: string }

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
  /** The exit status this outcome maps to: 0, 68 (partial) or 69 (interrupted). */
  status: number
}

function refuse(message: string, suggestions: string[], code = 'DRAIN_REFUSED', exitCode: (typeof ExitCode)[keyof typeof ExitCode] = ExitCode.precondition): MemdrainError {
  return new MemdrainError(message, { code, exitCode, suggestions })
}

/** Checks that `server` can be drained from `pool`; returns it. */
export function checkDrainable(pool: Pool, server: string, location: string): PoolServer {
  const s = findServer(pool, server)
  if (s === undefined) {
    throw refuse(`${server} is not in the pool ${location}`, [`Servers in the pool: ${pool.servers.map((x) => x.address).join(', ')}`], 'SERVER_NOT_IN_POOL', ExitCode.usage)
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

function newRecord(threshold: number, handoff: 'move' | 'copy'): TransitionRecord {
  const now = new Date().toISOString()
  return { startedAt: now, updatedAt: now, keysAtStart: 0, moved: 0, inPlace: 0, movedByClients: 0, skipped: {}, failed: 0, conflicts: 0, threshold, handoff, passes: 0 }
}

export function transitionedRatio(r: TransitionRecord): number {
  if (r.keysAtStart === 0) return 1
  return Math.min(1, (r.moved + r.inPlace + r.movedByClients) / r.keysAtStart)
}

/**
 * drain: mark the server deactivating, move every live key to its owner(s) under the pool
 * without it, and once the transitioned ratio reaches the threshold, purge it and mark it removed.
 */
export async function runDrain(opts: DrainOptions): Promise<DrainResult> {
  const emit = opts.onEvent ?? (() => undefined)
  let snap = await opts.store.load()
  const server = checkDrainable(snap.pool, opts.server, opts.store.location)
  const resumed = server.state === 'deactivating'
  const handoff = opts.handoff ?? server.transition?.handoff ?? (snap.pool.clients === 'pool-aware' ? 'move' : 'copy')
  if (handoff === 'copy' && !opts.dryRun && opts.waitForSwitch === undefined) {
    throw refuse('the copy hand-off needs a way to learn when applications have switched', [
      'Pass --switch-command CMD, or --wait-for-switch, or run in a terminal to confirm by hand.',
      'Or use --handoff move if your applications read the pool file (memdrain\'s library).',
    ], 'USAGE', ExitCode.usage)
  }

  let lock: HeldLock | undefined
  if (!opts.dryRun) lock = await opts.store.lock(`memdrain drain ${server.address}`)
  try {
    let record: TransitionRecord
    if (!opts.dryRun) {
      snap = await opts.store.load()
      const current = checkDrainable(snap.pool, server.address, opts.store.location)
      record = current.transition !== undefined && current.state === 'deactivating' ? { ...current.transition, threshold: opts.threshold, handoff } : newRecord(opts.threshold, handoff)
      const pool = withServer(snap.pool, server.address, (s) => ({ ...s, state: 'deactivating', transition: record }))
      snap = { pool, revision: await opts.store.save(pool, snap.revision) }
      emit({ type: 'marked', server: server.address, state: 'deactivating', resumed })
    } else {
      record = server.transition ?? newRecord(opts.threshold, handoff)
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
    let saving: Promise<void> = Promise.resolve()
    let lastSave = Date.now()
    const base = { ...record, skipped: { ...record.skipped } }
    const snapshotRecord = (t: Tally, keysAtStart: number, passes: number): TransitionRecord => {
      const skipped: Record<string, number> = { ...base.skipped }
      for (const [k, v] of Object.entries(t.skipped)) if (v > 0) skipped[k] = (skipped[k] ?? 0) + v
      return {
        ...base,
        updatedAt: new Date().toISOString(),
        keysAtStart,
        moved: base.moved + t.moved,
        inPlace: base.inPlace + t.inPlace,
        failed: t.failed,
        conflicts: base.conflicts + t.conflicts,
        skipped,
        passes: base.passes + passes,
      }
    }
    const persist = async (rec: TransitionRecord, state: PoolServer['state'] = 'deactivating'): Promise<void> => {
      if (opts.dryRun) return
      const pool = withServer(snap.pool, server.address, (s) => ({ ...s, state, transition: rec }))
      snap = { pool, revision: await opts.store.save(pool, snap.revision) }
    }
    let keysAtStart = record.keysAtStart
    let currentPass = 0

    const job = await runSourceJob({
      source: server.address,
      targets,
      route,
      maxChain: Math.max(1, pp.replicas),
      mode: handoff === 'move' ? 'move' : 'copy',
      store: 'add',
      order: opts.order,
      spoolDir: opts.spoolDir,
      rate: opts.rate,
      bandwidth: opts.bandwidth,
      minTtl: opts.minTtl,
      minFree: opts.minFree,
      allowEvictions: opts.allowEvictions,
      dryRun: opts.dryRun,
      signal: opts.signal,
      batchSize: opts.batchSize,
      inFlight: opts.inFlight,
      onPreflight: (dests) => {
        const short = dests.filter((d) => !d.fits)
        if (short.length > 0 && !opts.allowEvictions && !opts.dryRun) {
          throw refuse(
            `moving these keys would make ${short.map((d) => d.address).join(', ')} evict: ${short.map((d) => `${d.address} needs ${d.bytes} bytes, has ${d.freeBytes} free`).join('; ')}`,
            ['Add memory or servers first, or pass --allow-evictions to move anyway (the destination then evicts its coldest keys).'],
            'NO_ROOM',
          )
        }
      },
      onEvent: (e) => {
        if (e.type === 'dumped' && e.pass === 1 && !resumed) keysAtStart = e.toMove
        if (e.type === 'dumped' && e.pass === 1 && resumed && keysAtStart === 0) keysAtStart = e.toMove
        if (e.type === 'phase') currentPass = e.pass
        if (e.type === 'progress' && Date.now() - lastSave > 5000) {
          lastSave = Date.now()
          const rec = snapshotRecord(e.tally, keysAtStart, currentPass)
          saving = saving.then(() => persist(rec)).catch(() => undefined)
        }
        emit(e)
      },
    })
    await saving
    record = snapshotRecord(job.tally, keysAtStart, job.passes)

    if (!opts.dryRun && !job.interrupted && handoff === 'copy') {
      emit({ type: 'switch', phase: 'waiting' })
      await opts.waitForSwitch!({ source: server.address, destinations: targets })
      record.switchedAt = new Date().toISOString()
      emit({ type: 'switch', phase: 'done' })
      await persist(record)
    }

    const ratio = transitionedRatio(record)
    let purged = false
    let state: PoolServer['state'] = opts.dryRun ? server.state : 'deactivating'
    if (!opts.dryRun && !job.interrupted && ratio >= opts.threshold) {
      if (opts.purge) {
        const conn = await connectChecked(server.address, 'drained server')
        try {
          const reply = await conn.simple('flush_all')
          if (reply !== 'OK') throw refuse(`flush_all on ${server.address} answered ${reply}`, [], 'PURGE_FAILED', ExitCode.failed)
        } finally {
          await conn.close()
        }
        purged = true
        emit({ type: 'purged', server: server.address })
      }
      record.finishedAt = new Date().toISOString()
      state = 'removed'
      await persist(record, 'removed')
      emit({ type: 'marked', server: server.address, state: 'removed', resumed })
    } else {
      await persist(record)
    }
    const t = job.tally
    const secs = job.durationMs / 1000
    const status = job.interrupted ? ExitCode.interrupted : opts.dryRun ? ExitCode.ok : ratio < opts.threshold || t.failed > 0 ? ExitCode.partial : ExitCode.ok
    return {
      server: server.address,
      handoff,
      dryRun: opts.dryRun,
      state,
      resumed,
      keysAtStart: record.keysAtStart,
      bytesAtStart: job.bytesAtStart,
      moved: record.moved,
      inPlace: record.inPlace,
      movedByClients: record.movedByClients,
      conflicts: record.conflicts,
      skipped: record.skipped,
      failed: t.failed,
      failedBy: { ...t.failedBy },
      bytes: t.bytes,
      ratio,
      threshold: opts.threshold,
      purged,
      passes: job.passes,
      durationSeconds: secs,
      keysPerSecond: secs > 0 ? t.processed / secs : 0,
      destinations: t.perDestination.map((d) => ({ ...d })),
      preflight: job.preflight,
      samples: t.samples,
      interrupted: job.interrupted,
      status,
    }
  } finally {
    await lock?.release()
  }
}
