import { watch, type FSWatcher } from 'node:fs'
import path from 'node:path'
import { activeServers, samePlacementServer, type Pool, type PoolServer } from '../pool/model.js'
import { poolPlacement, type PoolPlacement } from '../pool/placement.js'
import { FilePoolStore, type PoolSnapshot } from '../pool/store.js'
import { optionInvalid } from './errors.js'

/**
 * One immutable view of the pool: the placement the client writes with (active servers) and,
 * while some server is deactivating, the placement it had before (active + deactivating, file
 * order), where keys not yet moved still live. Operations take the topology current when they
 * start and finish on it; a switch replaces the reference (atomic for every new operation).
 */
export class Topology {
  readonly current: PoolPlacement
  /** Placement including the deactivating servers; undefined when none is deactivating (or migration is off). */
  readonly previous: PoolPlacement | undefined
  /** Servers the client may talk to: active and deactivating ones. */
  readonly addresses: ReadonlySet<string>
  readonly deactivating: ReadonlySet<string>
  /** Operations (and background moves/repairs) still running on this topology. */
  inflight = 0
  private readonly scratch: number[] = []

  private poolNow: Pool
  private revisionNow: string

  constructor(pool: Pool, revision: string, migrate: boolean) {
    this.poolNow = pool
    this.revisionNow = revision
    try {
      this.current = poolPlacement(pool, activeServers(pool))
      const withDeactivating = pool.servers.filter((s) => s.state === 'active' || s.state === 'deactivating')
      this.deactivating = new Set(withDeactivating.filter((s) => s.state === 'deactivating').map((s) => s.address))
      // A rebalance in progress: a key not yet moved is at its owner under the previous pool
      // (another hash, weights or order: the deactivating servers alone do not say where).
      const before = pool.rebalance?.previous
      this.previous = !migrate ? undefined : before !== undefined ? poolPlacement(before) : this.deactivating.size > 0 ? poolPlacement(pool, withDeactivating) : undefined
      this.addresses = new Set([...this.current.servers, ...(this.previous?.servers ?? [])].map((s) => s.address))
    } catch (err) {
      if (err instanceof Error && err.name === 'PoolClientError') throw err
      throw optionInvalid('pool', `cannot be placed: ${(err as Error).message}`)
    }
    if (this.current.servers.length === 0) throw optionInvalid('pool', 'has no active server: at least one must own keys')
  }

  get pool(): Pool {
    return this.poolNow
  }

  get revision(): string {
    return this.revisionNow
  }

  /**
   * Whether `pool` places keys exactly like this topology (same hash, replicas, and servers with
   * the same address, weight, name, state and transition start). The CLI rewrites the pool file
   * often during a drain (its progress figures); such a rewrite only refreshes the pool.
   */
  sameLayout(pool: Pool): boolean {
    const a = this.poolNow
    if (a.hash !== pool.hash || a.replicas !== pool.replicas || a.servers.length !== pool.servers.length) return false
    if (a.rebalance?.startedAt !== pool.rebalance?.startedAt) return false
    return a.servers.every((s, i) => {
      const t = pool.servers[i]!
      return (
        samePlacementServer(s, t) &&
        s.state === t.state &&
        s.transition?.startedAt === t.transition?.startedAt
      )
    })
  }

  /** Takes a pool of the same layout (see sameLayout) and its revision. */
  refresh(pool: Pool, revision: string): void {
    this.poolNow = pool
    this.revisionNow = revision
  }

  get replicas(): number {
    return this.current.replicas
  }

  /** The key's chain under the current placement (owner first), as addresses. */
  chain(key: Uint8Array): string[] {
    return this.addressesOf(this.current, this.current.placement.chain(key, this.current.replicas, this.scratch))
  }

  /** The key's owner under the current placement (the chain's first link), without an array. */
  owner(key: Uint8Array): string {
    return this.current.servers[this.current.placement.owner(key)]!.address
  }

  /** Every current server in the key's chain order: the replacements `failover: "next"` takes. */
  extendedChain(key: Uint8Array): string[] {
    return this.addressesOf(this.current, this.current.placement.chain(key, this.current.servers.length, this.scratch))
  }

  /** The key's chain under the placement that includes the deactivating servers (undefined when there is none). */
  previousChain(key: Uint8Array): string[] | undefined {
    if (this.previous === undefined) return undefined
    return this.addressesOf(this.previous, this.previous.placement.chain(key, this.previous.replicas, this.scratch))
  }

  /**
   * Where a key not yet moved may still be: the links of its chain under the placement that
   * includes the deactivating servers that are not links of its current chain (in chain order).
   * Empty when nothing is deactivating or the chains agree.
   */
  oldSources(key: Uint8Array, currentChain: readonly string[]): string[] {
    const old = this.previousChain(key)
    return old === undefined ? [] : old.filter((a) => !currentChain.includes(a))
  }

  /** The server record (for its transition's start, which tags the migration counts). */
  server(address: string): PoolServer | undefined {
    return this.poolNow.servers.find((s) => s.address === address)
  }

  private addressesOf(pp: PoolPlacement, idx: readonly number[]): string[] {
    const out = new Array<string>(idx.length)
    for (let i = 0; i < idx.length; i++) out[i] = pp.servers[idx[i]!]!.address
    return out
  }
}

/**
 * Notices changes to the pool file: fs.watch on its directory (the CLI replaces the file by
 * rename, which a watch on the file itself would lose), debounced, plus a periodic check for
 * file systems where fs.watch is silent. A change is read and validated with the CLI's own
 * store; an unreadable or invalid file is reported and the current topology kept.
 */
export class PoolFileWatcher {
  private watcher: FSWatcher | undefined
  private timer: NodeJS.Timeout | undefined
  private debounce: NodeJS.Timeout | undefined
  private running: Promise<void> | undefined
  private again = false
  private closed = false
  /** The last problem reported, so that a broken file is reported once, not at every check. */
  private lastError: string | undefined
  private readonly store: FilePoolStore

  constructor(
    readonly file: string,
    private revision: string | undefined,
    private readonly intervalMs: number,
    private readonly onChange: (snapshot: PoolSnapshot) => void,
    private readonly onError: (err: Error) => void,
  ) {
    this.store = new FilePoolStore(file)
  }

  start(): void {
    const base = path.basename(this.file)
    try {
      this.watcher = watch(path.dirname(this.file), { persistent: false }, (_event, name) => {
        if (name === null || name === base) this.schedule()
      })
      this.watcher.on('error', () => {
        // The directory went away or the watch broke: the periodic check still runs.
        this.watcher?.close()
        this.watcher = undefined
      })
    } catch {
      // fs.watch unsupported here: the periodic check is enough.
    }
    this.timer = setInterval(() => void this.check(), this.intervalMs)
    this.timer.unref()
  }

  /** Whether the client is current with the file as of now (one read). */
  check(): Promise<void> {
    if (this.closed) return Promise.resolve()
    if (this.running !== undefined) {
      this.again = true
      return this.running
    }
    this.running = (async () => {
      do {
        this.again = false
        try {
          const snapshot = await this.store.load()
          this.lastError = undefined
          if (!this.closed && snapshot.revision !== this.revision) {
            this.revision = snapshot.revision
            this.onChange(snapshot)
          }
        } catch (err) {
          const message = (err as Error).message
          if (!this.closed && message !== this.lastError) {
            this.lastError = message
            this.onError(err as Error)
          }
        }
      } while (this.again && !this.closed)
    })().finally(() => {
      this.running = undefined
    })
    return this.running
  }

  /** Record a revision applied by other means, so the next check does not apply it again. */
  setRevision(revision: string): void {
    this.revision = revision
  }

  private schedule(): void {
    if (this.closed) return
    if (this.debounce !== undefined) clearTimeout(this.debounce)
    this.debounce = setTimeout(() => {
      this.debounce = undefined
      void this.check()
    }, 25)
    this.debounce.unref()
  }

  async close(): Promise<void> {
    this.closed = true
    this.watcher?.close()
    this.watcher = undefined
    if (this.timer !== undefined) clearInterval(this.timer)
    if (this.debounce !== undefined) clearTimeout(this.debounce)
    await this.running
  }
}
