import { setTimeout as sleep } from 'node:timers/promises'
import { DEFAULT_ITEM_SIZE_MAX, NodeBatch, VA, expiring, itemCas, itemFlags, itemTtl, keyEncoding, readLimits, storeMode, valueFits, type MetaConnection } from '../protocol/index.js'
import { connectChecked } from '../engine/engine.js'
import { SourceFollower } from '../engine/follower.js'
import { FingerprintSet } from '../engine/fingerprint-set.js'
import type { FingerprintCasMap } from '../engine/fingerprint-cas-map.js'
import { TokenBucket } from '../engine/throttle.js'


/**
 * mirror between passes: the active's writes (SourceFollower) reach the passive within
 * milliseconds. Each changed key is re-read at the active (read for move) and set on the passive
 * (set: the passive is never read by applications, the active's value always wins); a key
 * gone from the active is deleted on the passive when the mirror deletes. The CAS map learns what
 * was copied, so the next full pass skips it.
 *
 * A full pass and this path can both write a key: if the pass read it before a write and set it
 * after this path did, the passive would hold the older value until the next pass. So a key this
 * path wrote during a pass is queued again when that pass copies it (`passCopied`).
 *
 * Lost events (see SourceFollower) call `onLoss`: the mirror then starts its next full pass at once.
 */

const SET = storeMode('set')

export interface MirrorFollowOptions {
  active: string
  passive: string
  map: FingerprintCasMap
  delete: boolean
  rate: number
  batchSize?: number | undefined
  onLoss: (reason: string) => void
}

export interface MirrorFollowStats {
  copied: number
  deleted: number
  failed: number
}

export class MirrorFollow {
  readonly stats: MirrorFollowStats = { copied: 0, deleted: 0, failed: 0 }
  private stopped = false
  private loop: Promise<void> | undefined
  private touched = new FingerprintSet()
  private clockOffset = 0
  private itemSizeMax = DEFAULT_ITEM_SIZE_MAX

  private constructor(
    private readonly opts: MirrorFollowOptions,
    private readonly follower: SourceFollower,
    private active: MetaConnection,
    private passive: MetaConnection,
  ) {}

  static async start(opts: MirrorFollowOptions): Promise<MirrorFollow> {
    const follower = await SourceFollower.start(opts.active)
    const active = await connectChecked(opts.active, 'active')
    const passive = await connectChecked(opts.passive, 'passive')
    const f = new MirrorFollow(opts, follower, active, passive)
    await f.limits()
    f.loop = f.run()
    return f
  }

  /** A full pass starts: forget which keys this path wrote during the previous one. */
  passStarted(): void {
    this.touched = new FingerprintSet()
  }

  /** A full pass copied `key`: if this path wrote it during the pass, the pass may have put an older value back. */
  passCopied(key: Buffer): void {
    if (this.touched.size > 0 && this.touched.has(key)) this.follower.push(key)
  }

  async stop(): Promise<void> {
    this.stopped = true
    await this.follower.stop()
    await this.loop?.catch(() => undefined)
    await Promise.all([this.active.close().catch(() => undefined), this.passive.close().catch(() => undefined)])
  }

  private async limits(): Promise<void> {
    const limits = await readLimits(this.passive)
    this.clockOffset = limits.clockOffset
    this.itemSizeMax = limits.itemSizeMax
  }

  private async run(): Promise<void> {
    const bucket = new TokenBucket(this.opts.rate)
    const batchSize = this.opts.batchSize ?? 200
    // The write of the previous batch, still in flight while the next one is read: one round trip
    // per batch instead of two (measured: the lag's tail under load is round trips that wait for
    // CPU). Both go over the same passive connection, so they land in order.
    let writing: Promise<void> = Promise.resolve()
    while (!this.stopped) {
      await this.follower.wait(1000)
      if (this.stopped) break
      const loss = this.follower.takeLoss()
      if (loss !== undefined) this.opts.onLoss(loss)
      const keys = this.follower.take(batchSize)
      if (keys.length === 0) continue
      await bucket.take(keys.length)
      const previous = writing
      writing = this.copy(keys).catch((err: unknown) => this.failed(keys.length, err as Error))
      await previous
    }
    await writing
  }

  /** A batch failed: what it would have copied is left to the next full pass, which starts at once. */
  private async failed(keys: number, err: Error): Promise<void> {
    this.stats.failed += keys
    this.opts.onLoss(`copying changed keys failed (${err.message})`)
    await sleep(250)
    try {
      if (this.active.closed) this.active = await connectChecked(this.opts.active, 'active')
      if (this.passive.closed) this.passive = await connectChecked(this.opts.passive, 'passive')
    } catch {
      // The next round tries again; the full passes notice a passive that is down.
    }
  }

  /**
   * Reads `keys` at the active, then writes their values (and deletions) to the passive. The CAS map learns a copy only once the passive took it (a
   * failed write must not make the next pass skip the key).
   */
  private async copy(keys: Buffer[]): Promise<void> {
    const src = new NodeBatch()
    const dst = new NodeBatch()
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i]!
      if (keyEncoding(key) !== 'unaddressable') src.readForMove(i, key, 0, key.length)
    }
    if (src.count === 0) return
    const found = new Uint8Array(keys.length)
    const copied: [Buffer, Buffer][] = []
    await src.send(this.active, (r) => {
      const i = r.opaque
      if (r.status !== VA || i < 0 || i >= keys.length) return
      found[i] = 1
      const ttl = itemTtl(r)
      const cas = itemCas(r)
      if (!valueFits(r.valueEnd - r.valueStart, this.itemSizeMax) || expiring(ttl)) return
      const key = keys[i]!
      dst.store(SET, i, key, 0, key.length, r.buf, r.valueStart, r.valueEnd, itemFlags(r), ttl, this.clockOffset)
      // A copy of the CAS (the reply's buffer is reused): the map learns it once the passive took the write.
      if (cas !== undefined) copied.push([key, Buffer.from(cas)])
      this.touched.add(keys[i]!)
    })
    let deletes = 0
    if (this.opts.delete) {
      for (let i = 0; i < keys.length; i++) {
        const key = keys[i]!
        if (found[i] === 1 || keyEncoding(key) === 'unaddressable') continue
        dst.delete(i, key, 0, key.length)
        deletes++
      }
    }
    const writes = copied.length
    if (writes + deletes === 0) {
      dst.reset()
      return
    }
    return dst.send(this.passive, () => undefined).then(() => {
      for (const [key, cas] of copied) this.opts.map.copied(key, cas)
      this.stats.copied += writes
      this.stats.deleted += deletes
    })
  }
}
