import { withLockLoss } from '../pool/lock.js'
import { MemdrainError, ExitCode, refuse } from '../errors.js'
import { findServer, type Pool } from '../pool/model.js'
import { poolPlacement } from '../pool/placement.js'
import type { PoolStore } from '../pool/store.js'
import { addPreflights, connectChecked, jobKnobs, prepareSources, refuseWithoutRoom, type EngineEvent, type JobKnobs, type SourceJobOptions } from '../engine/engine.js'
import { FingerprintSet } from '../engine/fingerprint-set.js'
import { addTally, Tally } from '../engine/tally.js'
import { TokenBucket } from '../engine/throttle.js'
import type { RouteFn } from '../engine/transfer.js'
import { poolSpellings, refuseSameServers } from '../inspect/server-identity.js'
import type { WarmEvent } from '../engine/events.js'

/**
 * warm: a server came back empty (restart, replacement). Every key that belongs on it — its
 * replica chain includes it (pool replicas > 1), or, with `from`, its chain in a previous pool
 * did — is copied there from a peer that holds it, with add: a value the application wrote
 * there since the restart is never overwritten. Peers are only read (mg without LRU bump), the
 * server is only written; the pool file does not change, but the job holds the pool lock so that
 * no drain or rebalance reshapes the pool under it.
 *
 * One copy per key: a key is taken only from its preferred holder, the first member of its
 * chain in the current pool that is not the warmed server. When no such member exists (replicas
 * 1 and the warmed server owns the key now), any peer holding it may copy it; peers run at
 * once, and a key is taken by the first peer whose dump lists it, so a second holder does not
 * copy it again.
 */

export interface WarmOptions extends JobKnobs {
  store: PoolStore
  /** The server to warm (address or name). */
  server: string
  /** The previous pool (a replaced server): keys whose chain in it included the server. */
  from?: PoolStore | undefined
  threshold: number
  onEvent?: ((e: EngineEvent | WarmEvent) => void) | undefined
}

export type { WarmEvent } from '../engine/events.js'

export interface WarmResult {
  server: string
  from?: string
  peers: string[]
  unreachablePeers: string[]
  /** Keys found on their preferred peer that belong on the server (first dump of each peer). */
  found: number
  restored: number
  /** Keys the server already held (written by the application since the restart, or an earlier warm). */
  inPlace: number
  conflicts: number
  skipped: Record<string, number>
  failed: number
  failedBy: Record<string, number>
  bytes: number
  /** (restored + in place) / (found − gone − expiring). */
  ratio: number
  threshold: number
  passes: number
  durationSeconds: number
  keysPerSecond: number
  samples: { key: string; reason: string }[]
  interrupted: boolean
  /** 0, 68 (below the threshold, keys failed, or a peer unreachable) or 69 (interrupted). */
  status: number
}

/** The pool whose chains say where keys belong, and the warmed server in it. */
function keysPool(current: Pool, from: Pool | undefined, server: string, location: string, fromLocation: string | undefined): { pool: Pool; address: string } {
  const pool = from ?? current
  const where = fromLocation ?? location
  const s = findServer(pool, server)
  if (s === undefined) {
    throw refuse(`${server} is not in the pool ${where}`, [`Servers in it: ${pool.servers.map((x) => x.address).join(', ')}`], 'SERVER_NOT_IN_POOL', ExitCode.usage)
  }
  if (s.state !== 'active') {
    throw refuse(`${s.address} is ${s.state} in ${where}: it owns no keys there`, ['Warm an active server, or give the pool in which it was active with --from.'], 'SERVER_NOT_ACTIVE', ExitCode.precondition)
  }
  if (from === undefined && current.replicas < 2) {
    throw refuse(`the pool ${location} keeps one copy of each key (replicas 1): no peer holds a copy of ${s.address}'s keys`, [
      'For a server that replaced another, or came back after the pool moved its keys: pass --from OLD_POOL_FILE (the pool in which it owned them).',
    ], 'NO_REPLICAS', ExitCode.usage)
  }
  return { pool, address: s.address }
}

export async function runWarm(opts: WarmOptions): Promise<WarmResult> {
  const emit = opts.onEvent ?? (() => undefined)
  const { pool: current } = await opts.store.load()
  const old = opts.from === undefined ? undefined : (await opts.from.load()).pool
  const { pool, address: target } = keysPool(current, old, opts.server, opts.store.location, opts.from?.location)
  await refuseSameServers([...poolSpellings(current, opts.store.location), { address: target, where: 'the server to warm' }])
  const peers = current.servers.filter((s) => s.state !== 'removed' && s.address !== target).map((s) => s.address)
  if (peers.length === 0) throw refuse(`${target} has no peer in ${opts.store.location} to copy keys from`, ['Add the other servers to the pool file.'], 'NO_PEERS', ExitCode.precondition)

  // Where keys belong (`pool`), and who is expected to hold them now (the current pool).
  const belongs = poolPlacement(pool)
  const targetIndex = belongs.servers.findIndex((s) => s.address === target)
  const now = poolPlacement(current)
  const chainScratch: number[] = []
  const preferredHolder = (key: Buffer): string | undefined => {
    for (const i of now.placement.chain(key, now.replicas, chainScratch)) {
      const a = now.servers[i]!.address
      if (a !== target) return a
    }
    return undefined
  }
  // Set by a route that let the key come from any peer (no preferred holder): then the first
  // peer whose dump lists it takes it (select, called right after route for the same key).
  let anyPeer = false
  const routeFrom = (peer: string): RouteFn => {
    const peerIndex = now.servers.findIndex((s) => s.address === peer)
    if (old === undefined) {
      // One placement: the key belongs on the target if its chain includes it, and is taken from
      // the first other member of that same chain (replicas > 1: there always is one).
      return (key, out, offset) => {
        const chain = belongs.placement.chain(key, belongs.replicas, chainScratch)
        let holder = -1
        let includes = false
        for (const i of chain) {
          if (i === targetIndex) includes = true
          else if (holder === -1) holder = i
        }
        if (!includes || holder !== peerIndex) return 0
        out[offset] = 0
        return 1
      }
    }
    return (key, out, offset) => {
      if (!belongs.placement.chain(key, belongs.replicas, chainScratch).includes(targetIndex)) return 0
      const holder = preferredHolder(key)
      if (holder !== undefined && holder !== peer) return 0
      anyPeer = holder === undefined
      out[offset] = 0
      return 1
    }
  }

  // The warmed server must answer (and be a memcached memdrain supports) before anything starts.
  await (await connectChecked(target, 'server to warm')).close()
  const lock = await opts.store.lock(`memdrain warm ${target}`)
  opts = { ...opts, signal: withLockLoss(opts.signal, lock) }
  const started = performance.now()
  const total = new Tally([target])
  // One --rate and --bandwidth over the whole job: every peer takes from the same buckets.
  const throttle = { keys: new TokenBucket(opts.rate), bytes: new TokenBucket(opts.bandwidth) }
  const unreachablePeers: string[] = []
  let found = 0
  let passes = 0
  let interrupted = false
  // Every peer at once (under the one throttle): a peer's dump and copy overlap the others'. A key
  // any peer may copy (no preferred holder) is taken by the first whose dump lists it; a key with
  // a preferred holder is routed from that peer only, and needs no such set.
  const listedBy = peers.map(() => new FingerprintSet())
  const jobFor = (peer: string, index: number): SourceJobOptions => ({
    source: peer,
    targets: [target],
    route: routeFrom(peer),
    maxChain: 1,
    mode: 'copy',
    store: 'add',
    ...jobKnobs(opts),
    throttle,
    // Each peer's own handled set: a key is routed from one peer only, or (any peer may copy it)
    // taken by the first whose dump lists it (listedBy).
    // Writes made while it runs reach the warmed server itself (it is in the pool): a complete
    // first walk leaves nothing to sweep.
    sweep: false,
    ...(old === undefined
      ? {}
      : {
          select: (e) => {
            if (!anyPeer) return true
            for (let j = 0; j < listedBy.length; j++) if (j !== index && listedBy[j]!.has(e.key)) return false
            listedBy[index]!.add(e.key)
            return true
          },
        }),
    onEvent: emit,
  })
  try {
    // The peers that answer, prepared together (connect, first dump); then the plan over all of
    // them decides (the warmed server must have room for what they copy together), then they run.
    const reachable = await Promise.all(
      peers.map(async (peer) => {
        try {
          await (await connectChecked(peer, 'peer')).close()
          return true
        } catch (err) {
          if (!(err instanceof MemdrainError)) throw err
          unreachablePeers.push(peer)
          emit({ type: 'peer-unreachable', peer, message: err.message })
          return false
        }
      }),
    )
    const sources = peers.flatMap((peer, index) => (reachable[index] ? [{ peer, index }] : []))
    for (const { peer, index } of sources) emit({ type: 'peer', peer, index, of: peers.length })
    const { jobs: settled } = await prepareSources(sources.map(({ peer, index }) => jobFor(peer, index)))
    const jobs = settled.flatMap((p) => (p.status === 'fulfilled' ? [p.value] : []))
    const failed = settled.find((p) => p.status === 'rejected')
    try {
      if (failed !== undefined) throw failed.reason
      refuseWithoutRoom(addPreflights(jobs.map((j) => j.preflight)), opts.allowEvictions)
    } catch (err) {
      await Promise.all(jobs.map((j) => j.cancel()))
      throw err
    }
    for (const [i, job] of (await Promise.all(jobs.map((j) => j.run()))).entries()) {
      found += job.keysAtStart
      passes += job.passes
      addTally(total, job.tally)
      if (job.sourceError !== undefined) {
        // The peer went away mid-copy (killed, restarted): what it still held is not restored.
        const peer = sources[i]!.peer
        unreachablePeers.push(peer)
        emit({ type: 'peer-unreachable', peer, message: job.sourceError.message })
      }
      if (job.interrupted) interrupted = true
    }
    if (opts.signal?.aborted) interrupted = true
  } finally {
    await lock.release()
  }
  const live = found - total.skipped.gone - total.skipped.expiring
  const ratio = live <= 0 ? 1 : Math.min(1, (total.moved + total.inPlace) / live)
  const secs = (performance.now() - started) / 1000
  const status = interrupted
    ? ExitCode.interrupted
    : ratio < opts.threshold || total.failed > 0 || unreachablePeers.length > 0
      ? ExitCode.partial
      : ExitCode.ok
  return {
    server: target,
    ...(opts.from !== undefined ? { from: opts.from.location } : {}),
    peers,
    unreachablePeers,
    found,
    restored: total.moved,
    inPlace: total.inPlace,
    conflicts: total.conflicts,
    skipped: Object.fromEntries(Object.entries(total.skipped).filter(([, v]) => v > 0)),
    failed: total.failed,
    failedBy: Object.fromEntries(Object.entries(total.failedBy).filter(([, v]) => v > 0)),
    bytes: total.bytes,
    ratio,
    threshold: opts.threshold,
    passes,
    durationSeconds: secs,
    keysPerSecond: secs > 0 ? total.processed / secs : 0,
    samples: total.samples,
    interrupted,
    status,
  }
}
