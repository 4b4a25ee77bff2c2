import { setTimeout as sleep } from 'node:timers/promises'
import { MemdrainError, ExitCode } from '../errors.js'
import type { Pool } from '../pool/model.js'
import { formatAddress, keyEncoding, MemcachedNode, NodeBatch, parseAddress, HD, type MetaConnection } from '../protocol/index.js'
import { connectChecked, jobKnobs, prepareSourceJob, refuseWithoutRoom, type EngineEvent, type JobKnobs } from '../engine/engine.js'
import { FingerprintCasMap } from '../engine/fingerprint-cas-map.js'
import { KeyBatch } from '../engine/key-batch.js'
import { KeySpool } from '../engine/spool.js'
import type { RouteFn } from '../engine/transfer.js'
import { refuseSameServers } from '../inspect/server-identity.js'
import { MirrorFollow } from './mirror-follow.js'
import type { MirrorEvent, MirrorPass } from '../engine/events.js'

/**
 * mirror: keep a passive server a hot copy of an active one, for active/passive failover.
 *
 * Pass 1 copies every live key (`ms` with set semantics: the passive is never read by
 * applications, so the active's value always wins). Each later pass dumps the active again and
 * copies only keys whose CAS differs from the CAS the last copy was read with
 * (FingerprintCasMap: 16–32 bytes per key in memory), so a key the active changed while it was
 * being copied is copied again next pass. With `delete`, each pass then dumps the passive and
 * deletes there every key the active's dump did not list and the active confirms it lacks
 * (`mg`: a dump is a live walk and can miss a key being touched).
 *
 * Between passes the active's own write stream (`watch mutations`, see mirror-follow.ts) copies
 * each changed key within milliseconds; the passes are the safety net for what that stream does
 * not carry (incr/decr, touch, deletions before memcached 1.6.20, events memcached dropped), and
 * a reported loss starts the next pass at once. `follow: false` keeps the passes alone.
 *
 * Lag, per pass: the longest a change on the active can have waited before this pass copied it
 * — from the start of the previous pass's dump (a change made just after that start may not be
 * in that dump) to the end of this pass (for the first pass: from its own start). When a pass
 * ends, every change made before its dump began is on the passive (unless the dump missed the
 * key), so between two pass ends the oldest change not yet copied is never older than this.
 */

export interface MirrorOptions extends JobKnobs {
  active: string
  passive: string
  /** Seconds from the start of one pass to the start of the next. */
  intervalSeconds: number
  once: boolean
  delete: boolean
  onEvent?: ((e: EngineEvent | MirrorEvent) => void) | undefined
  /** Stop after this many passes (tests, benchmarks); default: until the signal (or 1 with `once`). */
  maxPasses?: number | undefined
  /** Follow the active's writes between passes (default true; not with `once`). */
  follow?: boolean | undefined
}

export type { MirrorEvent, MirrorPass, PassiveHealth } from '../engine/events.js'

export interface MirrorResult {
  active: string
  passive: string
  delete: boolean
  intervalSeconds: number
  passes: number
  first: MirrorPass | undefined
  last: MirrorPass | undefined
  copied: number
  deleted: number
  failed: number
  bytes: number
  lag: { lastMs: number; medianMs: number; maxMs: number }
  /** Keys copied (or deleted) between passes by following the active's writes. */
  followed: { copied: number; deleted: number; failed: number; losses: number } | undefined
  /** Memory held by the key → CAS map. */
  mapBytes: number
  keys: number
  interrupted: boolean
  /** 0; 68 with `once` when keys failed; 69 when `once` was interrupted. */
  status: number
}

function sameAddress(a: string, b: string): boolean {
  return formatAddress(parseAddress(a)) === formatAddress(parseAddress(b))
}

/**
 * Refuses a passive server the pool lists as active or deactivating: applications would read
 * it (or fall back to it), and the mirror overwrites whatever it holds. The active server need
 * not be in the pool: mirroring a standalone server is fine.
 */
export async function checkMirrorPool(pool: Pool | undefined, location: string, active: string, passive: string): Promise<void> {
  if (sameAddress(active, passive)) {
    throw new MemdrainError(`the active and the passive server are the same (${active})`, { code: 'USAGE', exitCode: ExitCode.usage, suggestions: ['Give two different servers: memdrain mirror ACTIVE PASSIVE.'] })
  }
  const listed = pool?.servers.find((s) => s.state !== 'removed' && sameAddress(s.address, passive))
  if (listed !== undefined) {
    throw new MemdrainError(`the passive server ${listed.address} is ${listed.state} in the pool ${location}: applications read it, and the mirror would overwrite what they wrote`, {
      code: 'PASSIVE_IN_POOL',
      exitCode: ExitCode.precondition,
      suggestions: [`Take it out of the pool first (memdrain drain ${listed.address}, or mark it removed), or mirror to a server outside the pool.`],
    })
  }
  // The same checks by what answers: the passive under another spelling of the active or of a server applications read.
  const readByApps = (pool?.servers ?? []).flatMap((s, i) => (s.state === 'removed' ? [] : [{ address: s.address, where: `servers[${i}] of ${location} (${s.state})` }]))
  // Only pairs with the passive: the active may well be a pool member under another spelling.
  await refuseSameServers([{ address: passive, where: 'the passive' }, { address: active, where: 'the active' }, ...readByApps], (s) => s.a.address === passive || s.b.address === passive)
}

/** The passive went away mid-pass (killed, restarted, link lost): named, with what to do. */
function passiveDown(passive: string, cause: string, copied: number, failed: number): MemdrainError {
  return new MemdrainError(`the passive ${passive} went away mid-pass (${cause}): ${copied} key(s) copied, ${failed} failed; nothing was written to the active`, {
    code: 'PASSIVE_UNREACHABLE',
    exitCode: ExitCode.precondition,
    suggestions: [`Check that memcached runs on ${passive}, then run the mirror again: a passive that restarted is empty, and the next run copies everything.`],
  })
}

/** Whether the passive still answers on `conn`; the error text when it does not. */
async function passiveProblem(conn: MetaConnection): Promise<string | undefined> {
  if (conn.closed) return 'connection closed'
  try {
    await conn.stats()
    return undefined
  } catch (err) {
    return (err as Error).message
  }
}

export async function runMirror(opts: MirrorOptions): Promise<MirrorResult> {
  const emit = opts.onEvent ?? (() => undefined)
  let map = new FingerprintCasMap()
  const route: RouteFn = (_key, out, offset) => {
    out[offset] = 0
    return 1
  }
  const maxPasses = opts.maxPasses ?? (opts.once ? 1 : Number.POSITIVE_INFINITY)
  const activeConn = await connectChecked(opts.active, 'active')
  let passiveConn: MetaConnection
  try {
    passiveConn = await connectChecked(opts.passive, 'passive')
  } catch (err) {
    await activeConn.close().catch(() => undefined)
    throw err
  }
  let baseEvictions = Number((await passiveConn.stats()).get('evictions') ?? 0)
  let lastEvictions = 0
  const lags: number[] = []
  const result: MirrorResult = {
    active: opts.active,
    passive: opts.passive,
    delete: opts.delete,
    intervalSeconds: opts.intervalSeconds,
    passes: 0,
    first: undefined,
    last: undefined,
    copied: 0,
    deleted: 0,
    failed: 0,
    bytes: 0,
    lag: { lastMs: 0, medianMs: 0, maxMs: 0 },
    followed: undefined,
    mapBytes: 0,
    keys: 0,
    interrupted: false,
    status: ExitCode.ok,
  }
  let previousStart = 0
  // A loss of followed events ends the wait for the next pass.
  let passNow: AbortController | undefined
  let losses = 0
  let follow: MirrorFollow | undefined
  const startFollow = async (): Promise<void> => {
    if (opts.once || opts.follow === false || opts.signal?.aborted) return
    try {
      follow = await MirrorFollow.start({
        active: opts.active,
        passive: opts.passive,
        map,
        delete: opts.delete,
        rate: opts.rate,
        batchSize: opts.batchSize,
        onLoss: (message) => {
          losses++
          emit({ type: 'mirror-follow', state: 'lost', message })
          passNow?.abort()
        },
      })
      emit({ type: 'mirror-follow', state: 'on', message: `following the writes of ${opts.active}` })
    } catch (err) {
      emit({ type: 'mirror-follow', state: 'unavailable', message: `cannot follow the writes of ${opts.active} (${(err as Error).message}): full passes only` })
    }
  }
  // Before the first dump: a write made while it runs is then either in the dump or followed.
  await startFollow()
  try {
    for (let pass = 1; pass <= maxPasses; pass++) {
      if (opts.signal?.aborted) break
      const start = Date.now()
      map.clearSeen()
      follow?.passStarted()
      let listed = 0
      const prepared = await prepareSourceJob({
        source: opts.active,
        targets: [opts.passive],
        route,
        maxChain: 1,
        mode: 'copy',
        store: 'set',
        ...jobKnobs(opts),
        maxPasses: 1,
        select: (e) => {
          listed++
          return map.seeChanged(e.key, e.cas)
        },
        onCopied: (key, _t, sourceCas) => {
          map.copied(key, sourceCas)
          follow?.passCopied(key)
        },
        onEvent: emit,
      })
      // The first pass decides: the passive must have room for what the active holds.
      if (pass === 1) {
        try {
          refuseWithoutRoom(prepared.preflight, opts.allowEvictions)
        } catch (err) {
          await prepared.cancel()
          throw err
        }
      }
      const job = await prepared.run()
      if (job.interrupted) {
        result.interrupted = true
        break
      }
      const problem = (job.tally.failedBy['destination-down'] ?? 0) > 0 || passiveConn.closed ? await passiveProblem(passiveConn) : undefined
      if (problem !== undefined) {
        if (opts.once || pass >= maxPasses) throw passiveDown(opts.passive, problem, job.tally.moved, job.tally.failed)
        // Continuous: wait for the passive to answer again, then copy everything (a restarted
        // memcached is empty; the CAS map would otherwise skip every key it thinks is copied).
        emit({ type: 'mirror-passive-down', passive: opts.passive, message: problem })
        await passiveConn.close().catch(() => undefined)
        const back = await reconnect(opts.passive, opts.signal)
        if (back === undefined) {
          result.interrupted = true
          break
        }
        passiveConn = back
        map = new FingerprintCasMap()
        // The follower writes into the map it was given: start it again over the new one.
        await follow?.stop()
        follow = undefined
        await startFollow()
        baseEvictions = Number((await passiveConn.stats()).get('evictions') ?? 0)
        lastEvictions = 0
        emit({ type: 'mirror-passive-back', passive: opts.passive })
        continue
      }
      let deleted = 0
      if (opts.delete) {
        deleted = await deleteGone(opts, map, activeConn, passiveConn)
        if (opts.signal?.aborted) {
          result.interrupted = true
          break
        }
      }
      // Keys the active no longer lists leave the map once they outnumber the live ones.
      const seen = map.seenCount()
      if (map.size > 2 * seen + 1024) map.compact()
      const end = Date.now()
      const stats = await passiveConn.stats()
      const evictions = Number(stats.get('evictions') ?? 0) - baseEvictions
      if (evictions > lastEvictions) emit({ type: 'mirror-evictions', passive: opts.passive, evictions })
      lastEvictions = evictions
      const t = job.tally
      const p: MirrorPass = {
        pass,
        startedAt: new Date(start).toISOString(),
        listed,
        changed: job.keysAtStart,
        copied: t.moved,
        deleted,
        failed: t.failed,
        skipped: t.skippedTotal,
        bytes: t.bytes,
        durationMs: end - start,
        lagMs: end - (pass === 1 ? start : previousStart),
        passive: { usedBytes: Number(stats.get('bytes') ?? 0), limitBytes: Number(stats.get('limit_maxbytes') ?? 0), items: Number(stats.get('curr_items') ?? 0), evictions },
      }
      previousStart = start
      result.passes = pass
      result.first ??= p
      result.last = p
      result.copied += p.copied
      result.deleted += deleted
      result.failed += p.failed
      result.bytes += p.bytes
      if (pass > 1 || maxPasses === 1) {
        lags.push(p.lagMs)
        if (lags.length > 1000) lags.shift()
      }
      emit({ type: 'mirror-pass', result: p })
      if (pass >= maxPasses) break
      const wait = start + opts.intervalSeconds * 1000 - Date.now()
      if (wait > 0) {
        passNow = new AbortController()
        const signal = opts.signal !== undefined ? AbortSignal.any([opts.signal, passNow.signal]) : passNow.signal
        await sleep(wait, undefined, { signal }).catch(() => undefined)
        passNow = undefined
      }
    }
  } finally {
    if (follow !== undefined) result.followed = { ...follow.stats, losses }
    await follow?.stop()
    await Promise.all([activeConn.close().catch(() => undefined), passiveConn.close().catch(() => undefined)])
  }
  const sorted = [...lags].sort((a, b) => a - b)
  result.lag = { lastMs: result.last?.lagMs ?? 0, medianMs: sorted[Math.floor(sorted.length / 2)] ?? 0, maxMs: sorted[sorted.length - 1] ?? 0 }
  result.mapBytes = map.bytes
  result.keys = map.size
  // Stopping a continuous mirror is its normal end; only a one-shot pass can be cut short.
  result.status = opts.once && result.interrupted ? ExitCode.interrupted : opts.once && result.failed > 0 ? ExitCode.partial : ExitCode.ok
  return result
}

/** Connects to the passive once it answers again (tried every second); undefined when `signal` aborts first. */
async function reconnect(passive: string, signal: AbortSignal | undefined): Promise<MetaConnection | undefined> {
  while (signal?.aborted !== true) {
    try {
      return await connectChecked(passive, 'passive')
    } catch (err) {
      if (!(err instanceof MemdrainError)) throw err
    }
    await sleep(1000, undefined, signal !== undefined ? { signal } : undefined).catch(() => undefined)
  }
  return undefined
}

/**
 * Deletes on the passive what the active no longer has: the passive's dump, minus the keys this
 * pass's active dump listed, minus the keys the active confirms it still holds. Returns how many
 * were deleted.
 */
async function deleteGone(opts: MirrorOptions, map: FingerprintCasMap, active: MetaConnection, passive: MetaConnection): Promise<number> {
  const spool = KeySpool.create({ root: opts.spoolDir, order: 'dump', serverNow: 0, label: `${opts.passive}-gone` })
  try {
    await MemcachedNode.of(passive).dump({
      onEntry: (e) => {
        if (!map.seen(e.key) && keyEncoding(e.key) !== 'unaddressable') spool.add(e.key, e.size, e.exp, e.la)
      },
      ...(opts.signal ? { signal: opts.signal } : {}),
    }).catch((err: unknown) => {
      if (opts.signal?.aborted) return
      throw err
    })
    if (opts.signal?.aborted || spool.count === 0) return 0
    spool.finish()
    const reader = spool.reader()
    const batch = new KeyBatch(opts.batchSize ?? 500)
    const present = new Uint8Array(batch.capacity)
    const b = new NodeBatch()
    let deleted = 0
    while (reader.next(batch) > 0) {
      present.fill(0)
      for (let i = 0; i < batch.count; i++) b.present(i, batch.keys, batch.keyStart[i]!, batch.keyEnd[i]!)
      await b.send(active, (r) => {
        if (r.status === HD && r.opaque >= 0 && r.opaque < batch.count) present[r.opaque] = 1
      })
      let n = 0
      for (let i = 0; i < batch.count; i++) {
        if (present[i] === 1) continue
        b.delete(i, batch.keys, batch.keyStart[i]!, batch.keyEnd[i]!, true)
        n++
      }
      if (n === 0) {
        b.reset()
        continue
      }
      await b.send(passive, (r) => {
        if (r.status === HD) deleted++
      })
    }
    return deleted
  } finally {
    spool.remove()
  }
}
