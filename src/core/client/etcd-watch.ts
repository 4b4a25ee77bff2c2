import { setTimeout as sleep } from 'node:timers/promises'
import type { EtcdPoolStore } from '../pool/etcd-store.js'
import type { PoolSnapshot } from '../pool/store.js'

/** What PoolClient needs of a pool watcher (the file watcher and this one). */
export interface PoolWatcher {
  start(): void
  check(): Promise<void>
  setRevision(revision: string): void
  close(): Promise<void>
}

export interface EtcdWatchHandlers {
  onChange: (snapshot: PoolSnapshot) => void
  /** A stored pool that does not validate, or is deleted: the current topology is kept. */
  onError: (err: Error) => void
  /** etcd stopped answering: the current topology is kept until it answers again. */
  onUnreachable: (err: Error, since: number) => void
  onReachable: (downForMs: number) => void
}

/**
 * Follows PREFIX/pool in etcd: a watch stream (a change arrives within milliseconds) from the
 * revision last applied, re-opened after a break, plus a read every `intervalMs` that catches a
 * silently dead stream (an etcd that hangs without closing the connection) and reports etcd as
 * unreachable. While unreachable the client keeps the topology it has.
 */
export class EtcdPoolWatcher implements PoolWatcher {
  private readonly abort = new AbortController()
  private timer: NodeJS.Timeout | undefined
  private loop: Promise<void> | undefined
  private running: Promise<void> | undefined
  private downSince: number | undefined
  private lastError: string | undefined

  constructor(
    private readonly store: EtcdPoolStore,
    private revision: string | undefined,
    private readonly intervalMs: number,
    private readonly h: EtcdWatchHandlers,
  ) {}

  start(): void {
    this.loop = this.watchLoop()
    this.timer = setInterval(() => void this.check(), this.intervalMs)
    this.timer.unref()
  }

  setRevision(revision: string): void {
    this.revision = revision
  }

  /** One read of the pool key: applies a newer revision, and tells whether etcd answers. */
  check(): Promise<void> {
    if (this.abort.signal.aborted) return Promise.resolve()
    this.running ??= (async () => {
      try {
        const { kv } = await this.store.client.get(this.store.poolKey)
        this.reachable()
        if (kv === undefined) this.problem(new Error(`the pool key ${this.store.poolKey} is absent at ${this.store.location}; keeping the current pool`))
        else this.apply(kv.modRevision, () => this.store.snapshotOf(kv))
      } catch (err) {
        this.unreachable(err as Error)
      }
    })().finally(() => (this.running = undefined))
    return this.running
  }

  private async watchLoop(): Promise<void> {
    const signal = this.abort.signal
    let backoff = 100
    while (!signal.aborted) {
      const from = this.revision !== undefined && /^\d+$/.test(this.revision) ? String(BigInt(this.revision) + 1n) : '0'
      try {
        await this.store.client.watch(
          this.store.poolKey,
          from,
          (kv, deleted) => {
            if (deleted) this.problem(new Error(`the pool key ${this.store.poolKey} was deleted at ${this.store.location}; keeping the current pool`))
            else this.apply(kv.modRevision, () => this.store.snapshotOf(kv))
          },
          signal,
          () => {
            backoff = 100
            this.reachable()
            // Anything between our revision and the watch start is replayed by the watch itself.
          },
        )
      } catch (err) {
        this.unreachable(err as Error)
      }
      if (signal.aborted) break
      await sleep(backoff, undefined, { signal }).catch(() => undefined)
      backoff = Math.min(backoff * 2, 1000)
      // A compacted start revision ends the watch: re-read, then watch from there.
      await this.check()
    }
  }

  private apply(revision: string, snapshot: () => PoolSnapshot): void {
    if (this.abort.signal.aborted || revision === this.revision) return
    if (this.revision !== undefined && /^\d+$/.test(this.revision) && BigInt(revision) < BigInt(this.revision)) return
    let snap: PoolSnapshot
    try {
      snap = snapshot()
    } catch (err) {
      this.revision = revision
      this.problem(err as Error)
      return
    }
    this.revision = revision
    this.lastError = undefined
    this.h.onChange(snap)
  }

  private problem(err: Error): void {
    if (err.message === this.lastError) return
    this.lastError = err.message
    this.h.onError(err)
  }

  private reachable(): void {
    if (this.downSince === undefined) return
    const down = Date.now() - this.downSince
    this.downSince = undefined
    this.h.onReachable(down)
  }

  private unreachable(err: Error): void {
    if (this.abort.signal.aborted || this.downSince !== undefined) return
    this.downSince = Date.now()
    this.h.onUnreachable(err, this.downSince)
  }

  async close(): Promise<void> {
    this.abort.abort()
    if (this.timer !== undefined) clearInterval(this.timer)
    await this.loop
    await this.running
  }
}
