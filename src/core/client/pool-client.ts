import { EventEmitter } from 'node:events'
import path from 'node:path'
import type { Pool } from '../pool/model.js'
import { FilePoolStore } from '../pool/store.js'
import { asPool } from '../pool/validate.js'
import { fanOut, PerKeyOnce, QuorumNotMet, type LinkResult } from './chain-ops.js'
import { clientClosed, PoolClientError, type ServerReply } from './errors.js'
import { newCounters, type ErrorContext, type Key, type PoolClientEvents, type PoolClientStats, type ServerStats, type UnavailableEvent } from './events.js'
import { HealthTracker } from './health.js'
import { MigrationLedger } from './migration.js'
import { isTransportError, ServerNode, type ItemForMove } from './node.js'
import { resolveOptions, type PoolClientOptions, type ResolvedOptions } from './options.js'
import { PoolFileWatcher, Topology } from './topology.js'
import { EtcdPoolWatcher, type PoolWatcher } from './etcd-watch.js'
import { EtcdPoolStore, isEtcdLocation } from '../pool/etcd-store.js'
import type { Registry } from 'prom-client'

const MAX_KEY_BYTES = 250

export interface WriteOptions {
  /** Seconds until the item expires; 0 = never (default: the client's `defaultExpires`). Over 30 days: a Unix time, as memcached reads it. */
  expires?: number
}

/** Where a key lives, as this client computes it (the same as `memdrain locate`). */
export interface KeyPlacement {
  /** The key's chain under the current placement (active servers), owner first. */
  chain: string[]
  /** The chain under the placement that includes the deactivating servers; undefined when none is deactivating. */
  previousChain: string[] | undefined
  /** Links of `previousChain` outside `chain`: where a read falls back to, and a write deletes the old copy. */
  oldSources: string[]
}

interface ChainRead {
  value: Buffer | undefined
  /** Links that answered (hit or miss). */
  answered: number
}

type WriteOp = UnavailableEvent['op']

function keyBytes(key: Key): Buffer {
  let bytes: Buffer
  if (typeof key === 'string') bytes = Buffer.from(key, 'utf8')
  else if (Buffer.isBuffer(key)) bytes = key
  else throw new PoolClientError('KEY_INVALID', `a key must be a string or a Buffer, got ${typeof key}`)
  if (bytes.length === 0 || bytes.length > MAX_KEY_BYTES) {
    throw new PoolClientError('KEY_INVALID', `a memcached key is 1 to ${MAX_KEY_BYTES} bytes; this one is ${bytes.length}`, {
      suggestions: ['Hash long keys (e.g. sha1 of the natural key) before using them.'],
    })
  }
  return bytes
}

function valueBytes(value: string | Buffer): Buffer {
  if (typeof value === 'string') return Buffer.from(value, 'utf8')
  if (Buffer.isBuffer(value)) return value
  throw new PoolClientError('VALUE_INVALID', `a value must be a string or a Buffer, got ${typeof value}`, {
    suggestions: ['Serialize objects yourself, e.g. JSON.stringify(value).'],
  })
}

function expirySeconds(expires: number): number {
  if (typeof expires !== 'number' || !Number.isInteger(expires) || expires < 0 || expires > 0xffffffff) {
    throw new PoolClientError('EXPIRY_INVALID', `an expiry is a whole number of seconds ≥ 0, got ${JSON.stringify(expires)}`)
  }
  return expires
}

function markedDown(server: string): ServerReply {
  return { server, ok: false, error: new Error(`${server} is marked down`) }
}

/**
 * A pool-aware memcached client for applications: the same pool file and placement as the
 * memdrain CLI, replicated chains, failover that keeps keys where they were, lazy migration off
 * deactivating servers, and topology switches when the pool file changes.
 *
 *   const cache = await PoolClient.fromPoolFile('memdrain.json')
 *   await cache.set('user:42', JSON.stringify(user), { expires: 300 })
 *   const buf = await cache.get('user:42')   // Buffer | undefined
 *   await cache.close()
 *
 * Reads never reject because a server failed (a failed server is a miss, with a `down` or
 * `unavailable` event); writes reject with a PoolClientError when too few servers took them.
 */
export class PoolClient extends EventEmitter<PoolClientEvents> {
  private readonly opts: ResolvedOptions
  private topo: Topology
  private readonly retired = new Set<Topology>()
  private readonly nodes = new Map<string, ServerNode>()
  private readonly closingNodes = new Set<Promise<void>>()
  private readonly health: HealthTracker
  private readonly ledger: MigrationLedger
  private readonly watcher: PoolWatcher | undefined
  private readonly etcd: EtcdPoolStore | undefined
  private readonly counters = newCounters()
  private readonly perServer = new Map<string, { requests: number; errors: number }>()
  private readonly foreground = new Set<Promise<unknown>>()
  /** Operations of the lean path (soleLink) in flight, and a waiter for when none is. */
  private leanInflight = 0
  private leanIdle: { promise: Promise<void>; resolve: () => void } | undefined
  private readonly background = new Set<Promise<unknown>>()
  private readonly moves = new PerKeyOnce<void>()
  private readonly repairs = new PerKeyOnce<void>()
  private manualRevisions = 0
  private closing: Promise<void> | undefined
  private closed = false
  private metricsRegistry: Promise<Registry> | undefined

  /** Reads and validates the pool file (errors name the field), then watches it unless `watch: false`. */
  static async fromPoolFile(file: string, options: PoolClientOptions = {}): Promise<PoolClient> {
    const resolved = path.resolve(file)
    const snapshot = await new FilePoolStore(resolved).load()
    return new PoolClient(snapshot.pool, { ...options, poolFile: resolved }, snapshot.revision)
  }

  /**
   * A pool file, or a pool kept in etcd (`etcd://HOST:PORT[,HOST:PORT]/PREFIX`, credentials and
   * TLS from MEMDRAIN_ETCD_*): the same `--pool` / `MEMDRAIN_POOL` value the CLI takes. An etcd
   * pool is watched (a change is applied within milliseconds on every host); while etcd is
   * unreachable the client keeps its topology and emits `pool-unreachable`.
   */
  static async fromPoolUrl(location: string = process.env.MEMDRAIN_POOL ?? 'memdrain.json', options: PoolClientOptions = {}): Promise<PoolClient> {
    if (!isEtcdLocation(location)) return PoolClient.fromPoolFile(location, options)
    const store = new EtcdPoolStore(location)
    try {
      const snapshot = await store.load()
      return new PoolClient(snapshot.pool, { ...options, poolUrl: location }, snapshot.revision)
    } finally {
      store.close()
    }
  }

  /**
   * A client for `pool`: a plain object written like a pool file (`{ hash: 'memjs', servers:
   * [{ address: '10.0.0.1:11211' }] }`, validated here: a problem throws a MemdrainError naming
   * the field) or a Pool from parsePoolText. Without `options.poolFile` the topology only changes
   * through updatePool() and migration counts are kept in memory (stats()).
   */
  constructor(pool: Pool | Record<string, unknown>, options: PoolClientOptions = {}, revision?: string) {
    super()
    this.opts = resolveOptions(options)
    this.topo = new Topology(asPool(pool, 'new PoolClient(pool)'), revision ?? 'initial', this.opts.migrate)
    this.health = new HealthTracker(this.opts.retryAfter * 1000, {
      down: (server, error, retryAt) => {
        this.counters.downEvents++
        this.emit('down', { server, error, retryAt })
      },
      up: (server, downForMs) => {
        this.counters.upEvents++
        this.emit('up', { server, downForMs })
      },
    })
    const poolFile = this.opts.poolFile === undefined ? undefined : path.resolve(this.opts.poolFile)
    this.etcd = this.opts.poolUrl === undefined ? undefined : new EtcdPoolStore(this.opts.poolUrl)
    this.ledger = new MigrationLedger(this.opts.report ? (this.etcd ?? poolFile) : undefined, this.opts.reportInterval * 1000, (err) =>
      this.reportError(err, { during: 'report' }),
    )
    this.ledger.start()
    if (this.etcd !== undefined && this.opts.watch) {
      const location = this.etcd.location
      this.watcher = new EtcdPoolWatcher(this.etcd, revision, this.opts.checkInterval * 1000, {
        onChange: (snapshot) => this.switchTo(snapshot.pool, snapshot.revision),
        onError: (err) => this.reportError(err, { during: 'topology' }),
        onUnreachable: (error, since) => this.emit('pool-unreachable', { location, error, revision: this.topo.revision, since }),
        onReachable: (downForMs) => this.emit('pool-reachable', { location, downForMs }),
      })
      this.watcher.start()
    } else if (poolFile !== undefined && this.opts.watch) {
      this.watcher = new PoolFileWatcher(
        poolFile,
        revision,
        this.opts.checkInterval * 1000,
        (snapshot) => this.switchTo(snapshot.pool, snapshot.revision),
        (err) => this.reportError(err, { during: 'topology' }),
      )
      this.watcher.start()
    }
  }

  /** The pool the client currently places keys with. */
  get pool(): Pool {
    return this.topo.pool
  }

  /** Revision of the current pool (the pool file's content hash, as the CLI computes it). */
  get revision(): string {
    return this.topo.revision
  }

  /** The migration report file of this client, when it writes one. */
  get reportFile(): string | undefined {
    return this.ledger.file
  }

  // ---------------------------------------------------------------- public operations

  /** The value, or undefined on a miss (also when every server of the key's chain is down). */
  // Not `async`: the lean path's one promise is the one returned (an invalid key still rejects).
  get(key: Key): Promise<Buffer | undefined> {
    let bytes: Buffer
    let sole: ServerNode | undefined
    try {
      bytes = keyBytes(key)
      sole = this.soleLink(bytes)
    } catch (err) {
      return Promise.reject(err as Error)
    }
    if (sole !== undefined) return this.getFrom(sole, key, bytes)
    return this.run(async (t) => {
      this.counters.gets++
      const chain = t.chain(bytes)
      const read = this.opts.parallelReads ? await this.readParallel(t, key, bytes, chain) : await this.readSequential(t, key, bytes, chain)
      let value = read.value
      if (value === undefined && t.previous !== undefined) value = await this.readThrough(t, key, bytes, chain, false)
      if (value === undefined) {
        this.counters.misses++
        if (read.answered === 0) this.unavailable('get', key, chain)
      } else {
        this.counters.hits++
      }
      return value
    })
  }

  /** Stores the value on the key's chain (deleting a copy left on its old server). */
  set(key: Key, value: string | Buffer, options: WriteOptions = {}): Promise<void> {
    let bytes: Buffer
    let data: Buffer
    let expires: number
    let sole: ServerNode | undefined
    try {
      bytes = keyBytes(key)
      data = valueBytes(value)
      expires = expirySeconds(options.expires ?? this.opts.defaultExpires)
      sole = this.soleLink(bytes)
    } catch (err) {
      return Promise.reject(err as Error)
    }
    if (sole !== undefined) return this.setOn(sole, key, bytes, data, expires)
    return this.run(async (t) => {
      this.counters.sets++
      const chain = t.chain(bytes)
      const sources = t.oldSources(bytes, chain)
      const targets = this.pickLinks(t, bytes, chain)
      // In parallel with the write: a later read must not fall back to the old copy.
      const cleanup = sources.length > 0 ? this.deleteOldCopies(t, key, bytes, sources, chain, true) : undefined
      try {
        await this.write(t, 'set', key, chain, targets, (s) => this.send(s, (n) => n.set(bytes, data, expires)))
      } finally {
        await cleanup
      }
    })
  }

  /**
   * Stores the value only if the key is absent; true when stored. The first live link of the
   * chain decides; replicas that disagree are brought in line in the background. While the key's
   * old server is deactivating, a copy still there counts as present (it is moved first).
   */
  async add(key: Key, value: string | Buffer, options: WriteOptions = {}): Promise<boolean> {
    const bytes = keyBytes(key)
    const data = valueBytes(value)
    const expires = expirySeconds(options.expires ?? this.opts.defaultExpires)
    return this.run(async (t) => {
      this.counters.adds++
      const chain = t.chain(bytes)
      if (t.oldSources(bytes, chain).length > 0) await this.readThrough(t, key, bytes, chain, true)
      const targets = this.pickLinks(t, bytes, chain)
      const results = await this.write(t, 'add', key, chain, targets, (s) => this.send(s, (n) => n.add(bytes, data, expires)), 'all')
      const decider = results.find((r) => r.ok)!
      const stored = decider.value === true
      const disagree = results.filter((r) => r.ok && r.value !== stored).map((r) => r.server)
      if (disagree.length > 0) {
        // Stored: the others held an older value, replace it. Not stored: withdraw ours where it landed.
        const fix = disagree.map((s) => (stored ? this.send(s, (n) => n.set(bytes, data, expires)) : this.send(s, (n) => n.delete(bytes))))
        this.track(t, Promise.all(fix), { during: 'write-cleanup', key })
      }
      return stored
    })
  }

  /** Deletes the key from its chain (and from its old server); true when some server had it. */
  async delete(key: Key): Promise<boolean> {
    const bytes = keyBytes(key)
    return this.run(async (t) => {
      this.counters.deletes++
      const chain = t.chain(bytes)
      const sources = t.oldSources(bytes, chain)
      // Old copy first: a move in flight then finds its source gone and withdraws its copy.
      const oldFound = sources.length > 0 ? await this.deleteOldCopies(t, key, bytes, sources, chain, false) : false
      const targets = this.pickLinks(t, bytes, chain)
      const results = await this.write(t, 'delete', key, chain, targets, (s) => this.send(s, (n) => n.delete(bytes)))
      return oldFound || results.some((r) => r.ok && r.value === true)
    })
  }

  /** Sets a new expiry (seconds, 0 = never) on the key's chain; true when some server had the key. */
  async touch(key: Key, expires: number): Promise<boolean> {
    const bytes = keyBytes(key)
    const seconds = expirySeconds(expires)
    return this.run(async (t) => {
      this.counters.touches++
      const chain = t.chain(bytes)
      const once = async (): Promise<boolean> => {
        const targets = this.pickLinks(t, bytes, chain)
        const results = await this.write(t, 'touch', key, chain, targets, (s) => this.send(s, (n) => n.touch(bytes, seconds)))
        return results.some((r) => r.ok && r.value === true)
      }
      if (await once()) return true
      if (t.oldSources(bytes, chain).length === 0) return false
      // Not on the chain: move it from its old server, then touch it where it now lives.
      if ((await this.readThrough(t, key, bytes, chain, true)) === undefined) return false
      return once()
    })
  }

  /** Where the key lives, as this client places it. */
  locate(key: Key): KeyPlacement {
    const bytes = keyBytes(key)
    const t = this.topo
    const chain = t.chain(bytes)
    return { chain, previousChain: t.previousChain(bytes), oldSources: t.oldSources(bytes, chain) }
  }

  /**
   * Switches to `pool` now (for applications that get the pool from elsewhere than a file).
   * Operations already running finish on the previous pool.
   */
  updatePool(pool: Pool | Record<string, unknown>): void {
    if (this.closing !== undefined) throw clientClosed()
    this.switchTo(asPool(pool, 'updatePool(pool)'), `manual-${++this.manualRevisions}`, true)
    this.watcher?.setRevision(this.topo.revision)
  }

  /** Reads the pool file now and switches if it changed (the watch and the periodic check do this on their own). */
  async checkPoolFile(): Promise<void> {
    await this.watcher?.check()
  }

  /** Resolves once the background work started so far (read repair, moves, the rest of quorum writes) is done. */
  async settle(): Promise<void> {
    while (this.background.size > 0) await Promise.allSettled([...this.background])
  }

  /** Writes the migration report now (it is written every `reportInterval` and at close()). */
  flushReport(): Promise<void> {
    return this.ledger.flush()
  }

  stats(): PoolClientStats {
    const t = this.topo
    const moved = this.ledger.counts()
    const servers: Record<string, ServerStats> = {}
    for (const address of t.addresses) {
      const h = this.health.snapshot(address)
      const c = this.perServer.get(address)
      const entry: ServerStats = {
        state: h.state,
        role: t.deactivating.has(address) ? 'deactivating' : 'active',
        requests: c?.requests ?? 0,
        errors: c?.errors ?? 0,
        movedByClient: moved.get(address) ?? 0,
      }
      if (h.downSince !== undefined) entry.downSince = new Date(h.downSince).toISOString()
      if (h.retryAt !== undefined) entry.retryAt = new Date(h.retryAt).toISOString()
      if (h.lastError !== undefined) entry.lastError = h.lastError
      servers[address] = entry
    }
    return { ...this.counters, revision: t.revision, hash: t.pool.hash, replicas: t.replicas, backgroundPending: this.background.size, servers }
  }

  /**
   * The counters of stats() in the Prometheus text exposition format (version 0.0.4), for the
   * application's own /metrics endpoint: `memdrain_client_*` (operations, hits, misses, fallback
   * reads, migrations, errors, per-server requests, errors, state). A registry of its own, not
   * prom-client's global one; prom-client is loaded on the first call only.
   */
  async metrics(): Promise<string> {
    this.metricsRegistry ??= import('./metrics.js').then((m) => m.clientMetricsRegistry(() => this.stats()))
    return (await this.metricsRegistry).metrics()
  }

  /**
   * Stops watching, lets operations and background work already started finish, writes the
   * migration report, and closes every connection. Operations called after close() reject
   * with CLIENT_CLOSED.
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown()
    return this.closing
  }

  // ---------------------------------------------------------------- the common case, lean

  /**
   * The one server (its node) a get or set of this key talks to, when that is all there is to it: one
   * replica, no server in transition (no old copy to fall back to or delete), no failover to
   * other servers, and the server not marked down (its probe, if one is due, is handed out).
   * Undefined otherwise: the general path handles it. Why a separate path: the application
   * calls this for every request, and the general one's arrays, fan-out and promise layers cost
   * a third of memjs' own time per request.
   */
  private soleLink(bytes: Buffer): ServerNode | undefined {
    const t = this.topo
    if (this.closing !== undefined || t.previous !== undefined || t.replicas !== 1 || this.opts.failover === 'next') return undefined
    const owner = t.owner(bytes)
    return this.health.acquire(owner) ? this.node(owner) : undefined
  }

  /**
   * A lean operation starts: the topology and close() know it is in flight (what run() does),
   * counted rather than kept in a set (no promise wrapped around it to find it by).
   */
  private leanStart(): Topology {
    const t = this.topo
    t.inflight++
    this.leanInflight++
    return t
  }

  private leanEnd(t: Topology): void {
    this.leave(t)
    if (--this.leanInflight === 0 && this.leanIdle !== undefined) {
      this.leanIdle.resolve()
      this.leanIdle = undefined
    }
  }

  /** Resolves once no lean operation is in flight. */
  private leanSettled(): Promise<void> {
    if (this.leanInflight === 0) return Promise.resolve()
    if (this.leanIdle === undefined) {
      let resolve!: () => void
      const promise = new Promise<void>((r) => (resolve = r))
      this.leanIdle = { promise, resolve }
    }
    return this.leanIdle.promise
  }

  /** send() without its closure and promise layers: one promise per request, settled from memjs' callback. */
  private getFrom(node: ServerNode, key: Key, bytes: Buffer): Promise<Buffer | undefined> {
    const server = node.address
    const t = this.leanStart()
    this.counters.gets++
    const c = this.countersOf(server)
    c.requests++
    return new Promise((resolve, reject) => {
      node.getWith(bytes, (err, value) => {
        try {
          if (err !== null) {
            this.sendFailed(server, c, err)
            this.counters.misses++
            this.unavailable('get', key, [server])
          } else {
            this.health.success(server)
            if (value === undefined) this.counters.misses++
            else this.counters.hits++
          }
          resolve(value)
        } catch (thrown) {
          // A listener of `unavailable`, `down` or `up` threw: the caller gets it, as from an async function.
          reject(thrown as Error)
        } finally {
          this.leanEnd(t)
        }
      })
    })
  }

  private setOn(node: ServerNode, key: Key, bytes: Buffer, data: Buffer, expires: number): Promise<void> {
    const server = node.address
    const t = this.leanStart()
    this.counters.sets++
    const c = this.countersOf(server)
    c.requests++
    return new Promise((resolve, reject) => {
      node.setWith(bytes, data, expires, (err) => {
        try {
          if (err !== null) {
            this.sendFailed(server, c, err)
            this.counters.writeFailures++
            reject(this.writeFailed('set', [server], [server], [{ server, ok: false, error: err }], undefined))
          } else {
            this.health.success(server)
            resolve()
          }
        } catch (thrown) {
          reject(thrown as Error)
        } finally {
          this.leanEnd(t)
        }
      })
    })
  }

  // ---------------------------------------------------------------- reads

  private async readSequential(t: Topology, key: Key, bytes: Buffer, chain: string[]): Promise<ChainRead> {
    const next = this.opts.failover === 'next'
    const links = next ? t.extendedChain(bytes) : chain
    const missed: string[] = []
    let answered = 0
    for (const server of links) {
      if (answered >= chain.length) break
      if (!this.health.acquire(server)) {
        this.counters.skippedDown++
        continue
      }
      if (next && !chain.includes(server)) this.counters.failovers++
      let value: Buffer | undefined
      try {
        value = await this.send(server, (n) => n.get(bytes))
      } catch {
        continue
      }
      answered++
      if (value !== undefined) {
        if (missed.length > 0) this.repair(t, key, bytes, server, missed)
        return { value, answered }
      }
      missed.push(server)
    }
    return { value: undefined, answered }
  }

  private readParallel(t: Topology, key: Key, bytes: Buffer, chain: string[]): Promise<ChainRead> {
    const targets = this.pickLinks(t, bytes, chain)
    if (targets.length === 0) return Promise.resolve({ value: undefined, answered: 0 })
    return new Promise((resolve) => {
      const missed: string[] = []
      let answered = 0
      let hitFrom: string | undefined
      const asks = targets.map((server) =>
        this.send(server, (n) => n.get(bytes)).then(
          (value) => {
            answered++
            if (value === undefined) missed.push(server)
            else if (hitFrom === undefined) {
              hitFrom = server
              resolve({ value, answered })
            }
          },
          () => undefined,
        ),
      )
      const all = Promise.all(asks).then(() => {
        if (hitFrom === undefined) resolve({ value: undefined, answered })
        else if (missed.length > 0) this.repair(t, key, bytes, hitFrom, missed)
      })
      this.track(t, all, { during: 'get', key })
    })
  }

  /**
   * A key missed on its chain: look at its old server(s) (placement including the deactivating
   * servers). On a hit, move the item to the chain (in the background, or awaited for add/touch)
   * and answer with it.
   */
  private async readThrough(t: Topology, key: Key, bytes: Buffer, chain: string[], awaitMove: boolean): Promise<Buffer | undefined> {
    for (const source of t.oldSources(bytes, chain)) {
      if (!this.health.acquire(source)) {
        this.counters.skippedDown++
        continue
      }
      this.counters.fallbackReads++
      if (!ServerNode.metaAddressable(bytes)) {
        // The meta protocol cannot name this key, so it cannot be moved with its TTL: read it only.
        this.counters.migrationSkipped++
        const value = await this.send(source, (n) => n.get(bytes)).catch(() => undefined)
        if (value === undefined) continue
        this.counters.fallbackHits++
        return value
      }
      let item: ItemForMove | undefined
      try {
        item = await this.send(source, (n) => n.readForMove(bytes))
      } catch (err) {
        this.reportError(err, { during: 'migrate', server: source, key })
        continue
      }
      if (item === undefined) continue
      this.counters.fallbackHits++
      const found = item
      const move = this.moves.run(bytes.toString('latin1'), () => this.move(t, key, bytes, source, found, chain))
      if (awaitMove) await move
      else this.track(t, move, { during: 'migrate', server: source, key })
      return found.value
    }
    return undefined
  }

  /**
   * Add at the chain, then delete at the source only if its CAS is unchanged. If the source
   * changed or vanished meanwhile (a write or delete through a client), the copy just added may
   * be stale: it is withdrawn, by its own CAS, so a newer value written since is kept.
   */
  private async move(t: Topology, key: Key, bytes: Buffer, source: string, item: ItemForMove, chain: string[]): Promise<void> {
    const dests = this.pickLinks(t, bytes, chain)
    if (dests.length === 0) {
      this.counters.migrationFailures++
      return
    }
    const adds = await fanOut(dests, (d) => this.send(d, (n) => n.addItem(bytes, item)), undefined).all
    const landed = adds.filter((r) => r.ok)
    if (landed.length === 0) {
      this.counters.migrationFailures++
      return
    }
    if (landed.every((r) => r.value === undefined) && (await this.holdsItem(landed, bytes, item))) {
      // The chain already holds this very item: another mover's copy (the drain's, or another
      // client's), whose source delete by this same CAS is in flight. Deleting the source first
      // would make that mover see it gone and withdraw its copy: the key would be nowhere. That
      // mover deletes the source; reads already hit the chain.
      return
    }
    let outcome: Awaited<ReturnType<ServerNode['deleteIfCas']>>
    try {
      outcome = await this.send(source, (n) => n.deleteIfCas(bytes, item.cas))
    } catch (err) {
      // Both copies are the same value; the next read hits the chain, the drain deletes the source.
      this.counters.migrationFailures++
      this.reportError(err, { during: 'migrate', server: source, key })
      return
    }
    if (outcome === 'deleted') {
      this.counters.migrated++
      this.ledger.record(source, t.server(source)?.transition?.startedAt)
      this.emit('migrated', { key, from: source, to: landed.map((r) => r.server), via: 'read' })
      return
    }
    this.counters.migrationConflicts++
    const withdraw = landed
      .filter((r) => r.value !== undefined)
      .map((r) => this.send<unknown>(r.server, (n) => (r.value === '' ? n.delete(bytes) : n.deleteIfCas(bytes, r.value!))))
    await Promise.allSettled(withdraw)
  }

  /** Whether one of `links` holds exactly `item` (value and flags). A failed read counts as no. */
  private async holdsItem(links: readonly LinkResult<string | undefined>[], bytes: Buffer, item: ItemForMove): Promise<boolean> {
    const found = await Promise.all(
      links.map((r) =>
        this.send(r.server, (n) => n.readForMove(bytes)).then(
          (there) => there !== undefined && there.flags === item.flags && there.value.equals(item.value),
          () => false,
        ),
      ),
    )
    return found.some((f) => f)
  }

  /** Copies the item at `from` to the links that missed it (add: a newer value written meanwhile wins). */
  private repair(t: Topology, key: Key, bytes: Buffer, from: string, to: string[]): void {
    if (!this.opts.readRepair) return
    if (!ServerNode.metaAddressable(bytes)) {
      this.counters.migrationSkipped++
      return
    }
    const task = this.repairs.run(bytes.toString('latin1'), async () => {
      // Read again through the meta protocol: memjs' get gives neither the TTL nor the flags.
      const item = await this.send(from, (n) => n.readForMove(bytes))
      if (item === undefined) return
      const results = await fanOut(to, (s) => this.send(s, (n) => n.addItem(bytes, item)), undefined).all
      const repaired = results.filter((r) => r.ok && r.value !== undefined).map((r) => r.server)
      this.counters.repairFailures += results.filter((r) => !r.ok).length
      if (repaired.length > 0) {
        this.counters.repairs += repaired.length
        this.emit('repair', { key, from, to: repaired })
      }
    })
    this.track(t, task, { during: 'repair', server: from, key })
  }

  // ---------------------------------------------------------------- writes

  /**
   * The links a write (or a parallel read) goes to: the live links of the chain, in order; with
   * `failover: "next"`, down links are replaced by the next live servers of the extended chain.
   * Hands out probes (HealthTracker.acquire): every returned link must be sent to.
   */
  private pickLinks(t: Topology, bytes: Buffer, chain: string[]): string[] {
    const out: string[] = []
    const next = this.opts.failover === 'next'
    for (const server of next ? t.extendedChain(bytes) : chain) {
      if (out.length >= chain.length) break
      if (this.health.acquire(server)) {
        if (next && !chain.includes(server)) this.counters.failovers++
        out.push(server)
      } else {
        this.counters.skippedDown++
      }
    }
    return out
  }

  /**
   * Sends to every target; resolves with the results in chain order once `writeQuorum` links
   * answered (clamped to the chain length), or every link when there is no quorum or `quorum`
   * is "all". The links still running finish in the background.
   */
  private async write<T>(
    t: Topology,
    op: WriteOp,
    key: Key,
    chain: string[],
    targets: string[],
    send: (server: string) => Promise<T>,
    quorum?: 'all',
  ): Promise<LinkResult<T>[]> {
    if (targets.length === 0) {
      this.counters.writeFailures++
      this.unavailable(op, key, chain)
      throw new PoolClientError('NO_SERVER_AVAILABLE', `${op}: every server of the key's chain is down (${chain.join(', ')})`, {
        replies: chain.map(markedDown),
        suggestions: [
          'Check those memcached servers; the client retries each one after `retryAfter` seconds.',
          'For a cache that keeps working on one server\'s outage, use replicas ≥ 2 in the pool, or failover: "next".',
        ],
      })
    }
    const need = quorum === 'all' || this.opts.writeQuorum === undefined ? undefined : Math.min(this.opts.writeQuorum, chain.length)
    const f = fanOut(targets, send, need)
    this.track(t, f.all, { during: op, key })
    try {
      return await f.decided
    } catch (err) {
      this.counters.writeFailures++
      throw this.writeFailed(op, chain, targets, err instanceof QuorumNotMet ? (err.results as LinkResult<T>[]) : [], need)
    }
  }

  /** WRITE_FAILED with every link's reply (`need`: the write quorum, undefined = any link). */
  private writeFailed<T>(op: WriteOp, chain: string[], targets: string[], results: LinkResult<T>[], need: number | undefined): PoolClientError {
    const replies: ServerReply[] = chain.map((server) => {
      const r = results.find((x) => x.server === server)
      return r === undefined ? (targets.includes(server) ? { server, ok: false, error: new Error('no answer yet') } : markedDown(server)) : { server, ok: r.ok, error: r.error }
    })
    const okCount = results.filter((r) => r.ok).length
    return new PoolClientError(
      'WRITE_FAILED',
      need === undefined
        ? `${op}: no server of the key's chain took it (${replies.map((r) => `${r.server}: ${r.error?.message ?? 'ok'}`).join('; ')})`
        : `${op}: ${okCount} of the ${need} servers the write quorum needs took it`,
      {
        replies,
        cause: results.find((r) => !r.ok)?.error,
        suggestions: ['Check the servers named in `replies`; the client marks failed ones down and retries them after `retryAfter`.'],
      },
    )
  }

  /**
   * Deletes copies left at a key's old servers; with `asMove` (a write replaced the value) each
   * copy deleted counts as a key moved off that server. Never rejects; returns whether a copy was found.
   */
  private async deleteOldCopies(t: Topology, key: Key, bytes: Buffer, sources: string[], chain: string[], asMove: boolean): Promise<boolean> {
    const results = await Promise.all(
      sources.map(async (source) => {
        if (!this.health.acquire(source)) {
          this.counters.skippedDown++
          return false
        }
        try {
          const found = await this.send(source, (n) => n.delete(bytes))
          if (found && asMove) {
            this.counters.migratedByWrites++
            this.ledger.record(source, t.server(source)?.transition?.startedAt)
            this.emit('migrated', { key, from: source, to: chain, via: 'write' })
          }
          return found
        } catch (err) {
          this.reportError(err, { during: 'write-cleanup', server: source, key })
          return false
        }
      }),
    )
    return results.some((r) => r)
  }

  // ---------------------------------------------------------------- plumbing

  /** One request to one server, with health and counters. */
  private async send<T>(server: string, op: (node: ServerNode) => Promise<T>): Promise<T> {
    const node = this.node(server)
    const c = this.countersOf(server)
    c.requests++
    try {
      const value = await op(node)
      this.health.success(server)
      return value
    } catch (err) {
      this.sendFailed(server, c, err)
      throw err
    }
  }

  private countersOf(server: string): { requests: number; errors: number } {
    let c = this.perServer.get(server)
    if (c === undefined) {
      c = { requests: 0, errors: 0 }
      this.perServer.set(server, c)
    }
    return c
  }

  /** Counts a failed request and tells the health tracker (a transport error marks the server down). */
  private sendFailed(server: string, c: { errors: number }, err: unknown): void {
    c.errors++
    if (isTransportError(err)) {
      this.counters.serverErrors++
      if (!this.closed) this.health.failure(server, err)
    } else {
      this.counters.commandErrors++
      this.health.success(server)
    }
  }

  private node(address: string): ServerNode {
    let node = this.nodes.get(address)
    if (node === undefined) {
      const record = this.topo.server(address) ?? [...this.retired].map((t) => t.server(address)).find((s) => s !== undefined)
      if (record === undefined) throw new Error(`PoolClient: ${address} is in no topology (bug)`)
      node = new ServerNode(address, record.host, record.port, {
        timeout: this.opts.timeout,
        connectTimeout: this.opts.connectTimeout,
        keepAlive: this.opts.keepAlive,
        logger: this.opts.logger,
      })
      this.nodes.set(address, node)
    }
    return node
  }

  private async run<T>(fn: (t: Topology) => Promise<T>): Promise<T> {
    if (this.closing !== undefined) throw clientClosed()
    const t = this.topo
    t.inflight++
    const p = fn(t)
    this.foreground.add(p)
    try {
      return await p
    } finally {
      this.foreground.delete(p)
      this.leave(t)
    }
  }

  /** Background work on topology `t`: `t` (and its connections) stay until it is done; close() waits for it. */
  private track(t: Topology, work: Promise<unknown>, context: ErrorContext): void {
    t.inflight++
    const p: Promise<void> = work.then(
      () => undefined,
      (err: unknown) => this.reportError(err, context),
    )
    const done = p.finally(() => {
      this.background.delete(done)
      this.leave(t)
    })
    this.background.add(done)
  }

  private leave(t: Topology): void {
    t.inflight--
    if (t !== this.topo && t.inflight === 0 && this.retired.delete(t)) this.collectNodes()
  }

  private switchTo(pool: Pool, revision: string, rethrow = false): void {
    if (this.closing !== undefined) return
    if (this.topo.sameLayout(pool)) {
      this.topo.refresh(pool, revision)
      return
    }
    let next: Topology
    try {
      next = new Topology(pool, revision, this.opts.migrate)
    } catch (err) {
      if (rethrow) throw err
      this.reportError(err, { during: 'topology' })
      return
    }
    const previous = this.topo
    this.topo = next
    if (previous.inflight > 0) this.retired.add(previous)
    this.collectNodes()
    this.counters.topologySwitches++
    this.emit('topology', {
      revision,
      previousRevision: previous.revision,
      hash: pool.hash,
      replicas: next.replicas,
      active: next.current.servers.map((s) => s.address),
      deactivating: [...next.deactivating],
    })
  }

  /** Closes the connections of servers no topology in use references any more. */
  private collectNodes(): void {
    const used = new Set(this.topo.addresses)
    for (const t of this.retired) for (const a of t.addresses) used.add(a)
    this.health.retain(used)
    for (const [address, node] of this.nodes) {
      if (used.has(address)) continue
      this.nodes.delete(address)
      this.perServer.delete(address)
      const closing = node.close().finally(() => this.closingNodes.delete(closing))
      this.closingNodes.add(closing)
    }
  }

  private unavailable(op: WriteOp, key: Key, servers: string[]): void {
    this.counters.unavailable++
    this.emit('unavailable', { op, key, servers })
  }

  private reportError(err: unknown, context: ErrorContext): void {
    // Transport failures already produced a `down` event.
    if (isTransportError(err)) return
    if (this.listenerCount('error') === 0) return
    this.emit('error', err instanceof Error ? err : new Error(String(err)), context)
  }

  private async shutdown(): Promise<void> {
    await this.watcher?.close()
    // Operations already started finish (each is bounded by the request timeouts); so does the
    // background work they started, which may start more.
    while (this.foreground.size + this.background.size + this.leanInflight > 0) await Promise.allSettled([...this.foreground, ...this.background, this.leanSettled()])
    await this.ledger.close()
    this.etcd?.close()
    this.closed = true
    await Promise.all([...[...this.nodes.values()].map((n) => n.close()), ...this.closingNodes])
    this.nodes.clear()
  }
}
