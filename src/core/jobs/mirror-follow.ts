import { setTimeout as sleep } from 'node:timers/promises'
import { MetaPayload, VA, expiryToken, keyEncoding, valueFits, type MetaConnection } from '../protocol/index.js'
import { connectChecked } from '../engine/engine.js'
import { SourceFollower } from '../engine/follower.js'
import { FingerprintSet } from '../engine/fingerprint-set.js'
import type { FingerprintCasMap } from '../engine/fingerprint-cas-map.js'
import { TokenBucket } from '../engine/throttle.js'


/**
 * mirror between passes: the active's writes (SourceFollower) reach the passive within
 * milliseconds. Each changed key is re-read at the active (`mg k v f t c`) and set on the passive
 * (`ms … MS`: the passive is never read by applications, the active's value always wins); a key
 * gone from the active is deleted on the passive when the mirror deletes. The CAS map learns what
 * was copied, so the next full pass skips it.
 *
 * A full pass and this path can both write a key: if the pass read it before a write and set it
 * after this path did, the passive would hold the older value until the next pass. So a key this
 * path wrote during a pass is queued again when that pass copies it (`passCopied`).
 *
 * Lost events (see SourceFollower) call `onLoss`: the mirror then starts its next full pass at once.
 */

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
  private itemSizeMax = 1048576

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
    const [st, settings] = await Promise.all([this.passive.stats(), this.passive.stats('settings')])
    this.clockOffset = Number(st.get('time') ?? 0) - Math.round(Date.now() / 1000)
    this.itemSizeMax = Number(settings.get('item_size_max') ?? 1048576)
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
    const src = new MetaPayload()
    const dst = new MetaPayload()
    let n = 0
    for (let i = 0; i < keys.length; i++) {
      if (keyEncoding(keys[i]!) === 'unaddressable') continue
      src.command('mg', keys[i]!).flags('v f t c u q').flag('O', i).end()
      n++
    }
    if (n === 0) return
    const found = new Uint8Array(keys.length)
    const copied: [Buffer, Buffer][] = []
    await this.active.batch(src.noop().take(), (r) => {
      const i = r.opaque
      if (r.status !== VA || i < 0 || i >= keys.length) return
      found[i] = 1
      const value = r.value!
      const ttl = r.flagInt(0x74)
      const cas = r.flagBytes(0x63)
      if (!valueFits(value.length, this.itemSizeMax) || (ttl !== -1 && ttl < 1)) return
      const flags = r.flagInt(0x66)
      dst.command('ms', keys[i]!).size(value.length).flag('F', Number.isNaN(flags) ? 0 : flags).flag('T', expiryToken(ttl, this.clockOffset)).flags('MS q').end(value)
      if (cas !== undefined) copied.push([keys[i]!, Buffer.from(cas)])
      this.touched.add(keys[i]!)
    })
    let deletes = 0
    if (this.opts.delete) {
      for (let i = 0; i < keys.length; i++) {
        if (found[i] === 1 || keyEncoding(keys[i]!) === 'unaddressable') continue
        dst.command('md', keys[i]!).flags('q').end()
        deletes++
      }
    }
    const writes = copied.length
    if (writes + deletes === 0) {
      dst.reset()
      return
    }
    return this.passive.batch(dst.noop().take(), () => undefined).then(() => {
      for (const [key, cas] of copied) this.opts.map.copied(key, cas)
      this.stats.copied += writes
      this.stats.deleted += deletes
    })
  }
}
