import { setTimeout as sleep } from 'node:timers/promises'
import { EX, HD, NodeBatch, VA, expiring, itemCas, itemFlags, itemTtl, keyEncoding, readLimits, storeMode, valueFits, type MetaConnection, type MetaReply } from '../protocol/index.js'
import { connectChecked } from '../engine/engine.js'
import type { SourceFollower } from '../engine/follower.js'
import { TokenBucket } from '../engine/throttle.js'
import type { RouteFn } from '../engine/transfer.js'
import type { CopyJournal } from './copy-journal.js'
import { writtenAfterSwitch } from './switch-marks.js'
import { UNKNOWN_SOURCE_CAS } from './adopt-copies.js'

/**
 * The copy hand-off's follower at work: a key the source stores (or deletes) after memdrain
 * copied it is refreshed at the destination within milliseconds, before and after the switch.
 *
 *   source:       mg <key> v f t c q                 (re-read: the latest value, whatever the event said)
 *   destination:  ms <key> <len> F T C<cas of memdrain's copy> c    → HD c<new cas>: journaled
 *                 EX (someone else wrote it there since) → md <key> q: which is newer is unknowable
 *                 NF (gone there) → nothing: absent is safe
 *   key gone at the source: md <key> C<cas of memdrain's copy> q
 * Each ms is journaled as an intent first (write-ahead, as the transfer's copies): a refresh
 * whose answer never comes (timed out at a stalled destination, which applies it later) leaves
 * a possible copy of unknown CAS, which is deleted or compared with the source later, never an
 * EX read as "someone else wrote it" and the copy left in place.
 * A copy whose destination CAS is unknown (the add found the key there, or the write is still
 * unanswered) cannot be written safely: it is looked at again a second later (its answer has
 * come by then), and deleted if still unknown. A key with no copy yet is looked at once more a
 * second later too (its copy may be in flight: the engine read it just before the write), then
 * dropped: the copy pass reads the source after the write.
 *
 * Refreshes take tokens from the job's throttle. Events memcached dropped, a watcher that
 * reconnected or a storm the follower could not queue are reported through `onLoss`: the caller
 * runs a delta pass over the journal for what they may have covered.
 */

export interface RefresherOptions {
  follower: SourceFollower
  source: string
  targets: readonly string[]
  route: RouteFn
  maxChain: number
  journal: CopyJournal
  /** Keys/s shared with the job (the refresh counts against --rate). */
  throttle?: TokenBucket | undefined
  batchSize?: number | undefined
  onLoss?: ((reason: string) => void) | undefined
}

export interface RefreshStats {
  /** Copies re-written with the source's newer value. */
  refreshed: number
  /** Copies deleted: gone at the source, replaced at the destination, or of unknown origin. */
  invalidated: number
  /** Keys whose event came before (or without) any copy. */
  notCopied: number
  failed: number
  /** Time from a batch being taken to its last answer, ms (last, max). */
  lastBatchMs: number
}

const SET_REPORTING_CAS = storeMode('set', true)
const RETRY_MS = 1000
const FORGOTTEN = 0xffffffff
const MS = 1
/** md C<cas of memdrain's copy>: only if the copy is still the one memdrain wrote. */
const MD_OURS = 2
/** md: whatever is there (a copy of unknown origin, or one someone else replaced). */
const MD_ANY = 3

interface Op {
  i: number
  t: number
  /** The latest journal record of (key, t) when the op was sent (a refresh: its own intent): a newer one means memdrain itself wrote since. */
  seq: number
  kind: number
  cas: string | undefined
  srcCas: Buffer | undefined
  value?: Buffer
  flags?: number
  ttl?: number
}
const MAX_DEFERRED = 50_000

interface Deferred {
  key: Buffer
  at: number
  /** Looked at once already with an unknown destination CAS. */
  unknownOnce: boolean
  /** Its write already met EX once: another EX means someone else wrote the destination. */
  exOnce?: boolean
}

export class Refresher {
  readonly stats: RefreshStats = { refreshed: 0, invalidated: 0, notCopied: 0, failed: 0, lastBatchMs: 0 }
  private source: MetaConnection | undefined
  private readonly conns: (MetaConnection | undefined)[]
  private clockOffset: number[] = []
  private itemSizeMax: number[] = []
  private stopped = false
  private loop: Promise<void> | undefined
  private deferred: Deferred[] = []
  private busy: Promise<void> = Promise.resolve()
  private readonly scratch: Int32Array

  private readonly ownShare: TokenBucket | undefined
  /** Per destination, once the switch is done: the CAS above which an item was written after it (see switch-marks.ts). */
  private switchMarks: readonly (bigint | undefined)[] | undefined

  constructor(private readonly opts: RefresherOptions) {
    this.ownShare = opts.throttle !== undefined && opts.throttle.rate > 0 ? new TokenBucket(Math.max(1, opts.throttle.rate / 2)) : undefined
    this.conns = opts.targets.map(() => undefined)
    this.scratch = new Int32Array(Math.max(1, opts.maxChain))
  }

  /** Connects and starts refreshing in the background. */
  async start(): Promise<void> {
    await this.connect()
    this.loop = this.run()
  }

  /**
   * Refreshes every key pending now (and those deferred) before resolving: before the switch,
   * and once the catch-up is done.
   */
  async settle(): Promise<void> {
    for (let round = 0; round < 1000 && !this.stopped; round++) {
      await this.busy
      const keys = this.opts.follower.take(this.opts.batchSize ?? 200)
      const due = this.deferred.splice(0)
      if (keys.length === 0 && due.length === 0) return
      await this.exclusive(() => this.refresh(keys.map((key): Deferred => ({ key, at: 0, unknownOnce: true, exOnce: true })).concat(due.map((d) => ({ ...d, unknownOnce: true, exOnce: true })))))
    }
  }

  /** The switch is done: a copy replaced at a destination after `marks` is the application's newer write, kept. */
  setSwitchMarks(marks: readonly (bigint | undefined)[]): void {
    this.switchMarks = marks
  }

  /** Stops the refresher and its follower. */
  async stop(): Promise<void> {
    this.stopped = true
    await this.opts.follower.stop()
    await this.loop?.catch(() => undefined)
    await Promise.all([this.source, ...this.conns].map((c) => c?.close().catch(() => undefined)))
  }

  private async connect(): Promise<void> {
    if (this.source === undefined || this.source.closed) this.source = await connectChecked(this.opts.source, 'source')
    for (let t = 0; t < this.opts.targets.length; t++) {
      const c = this.conns[t]
      if (c !== undefined && !c.closed) continue
      const conn = await connectChecked(this.opts.targets[t]!, 'destination')
      this.conns[t] = conn
      const limits = await readLimits(conn)
      this.clockOffset[t] = limits.clockOffset
      this.itemSizeMax[t] = limits.itemSizeMax
    }
  }

  private exclusive(fn: () => Promise<void>): Promise<void> {
    const next = this.busy.then(fn, fn)
    this.busy = next.catch(() => undefined)
    return next
  }

  private async run(): Promise<void> {
    const { follower } = this.opts
    const batchSize = this.opts.batchSize ?? 200
    while (!this.stopped) {
      await follower.wait(this.deferred.length > 0 ? 100 : 1000)
      if (this.stopped) break
      const loss = follower.takeLoss()
      if (loss !== undefined) this.opts.onLoss?.(loss)
      const now = performance.now()
      let due = 0
      while (due < this.deferred.length && this.deferred[due]!.at <= now) due++
      const keys = follower.take(batchSize)
      if (keys.length === 0 && due === 0) continue
      const work = keys.map((key): Deferred => ({ key, at: 0, unknownOnce: false })).concat(this.deferred.splice(0, due).map((d) => ({ ...d, unknownOnce: true })))
      // Refreshes count against --rate, but take at most half of it: the copy keeps going under a write storm
      // (past what the refresher keeps up with, the follower reports a loss and the delta pass covers it).
      await this.ownShare?.take(work.length)
      await this.opts.throttle?.take(work.length)
      try {
        await this.exclusive(() => this.refresh(work))
      } catch (err) {
        // A connection failed: what this batch would have fixed is left to the delta pass.
        this.stats.failed += work.length
        this.opts.onLoss?.(`a refresh failed (${(err as Error).message})`)
        await sleep(250)
        await this.connect().catch(() => undefined)
      }
    }
  }

  /** One batch: read the source, then write or delete memdrain's copies at the destinations. */
  private async refresh(work: Deferred[]): Promise<void> {
    const started = performance.now()
    await this.connect()
    const { journal, route } = this.opts
    const index = journal.index
    const src = new NodeBatch()
    // Per work item: its (target, destCas) pairs with a known copy.
    const pairs: { t: number; cas: string }[][] = []
    const ops: Op[] = []
    let toRead = 0
    for (let i = 0; i < work.length; i++) {
      const w = work[i]!
      const mine: { t: number; cas: string }[] = []
      pairs.push(mine)
      if (keyEncoding(w.key) === 'unaddressable') continue
      const n = route(w.key, this.scratch, 0)
      let any = false
      let unknown = false
      for (let j = 0; j < n; j++) {
        const t = this.scratch[j]!
        if (!index.has(w.key, t)) continue
        const cas = index.destCas(w.key, t)
        if (cas !== undefined) {
          mine.push({ t, cas })
          any = true
        } else if (index.latest(w.key, t) !== FORGOTTEN) {
          any = true
          // Unknown origin (or unanswered yet): a second look, then deleted.
          if (w.unknownOnce) ops.push({ i, t, seq: index.latest(w.key, t), kind: MD_ANY, cas: undefined, srcCas: undefined })
          else unknown = true
        }
      }
      if ((!any || unknown) && !w.unknownOnce) this.defer(w.key)
      else if (!any) this.stats.notCopied++
      if (mine.length > 0) {
        src.read(i, w.key, 0, w.key.length)
        toRead++
      }
    }
    const read = new Uint8Array(work.length)
    if (toRead > 0) {
      await src.send(this.source!, (r: MetaReply) => {
        const i = r.opaque
        if (r.status !== VA || i < 0 || i >= work.length) return
        read[i] = 1
        const ttl = itemTtl(r)
        const c = itemCas(r)
        for (const p of pairs[i]!) {
          const tooLate = expiring(ttl) || !valueFits(r.valueEnd - r.valueStart, this.itemSizeMax[p.t]!) || c === undefined
          // The copy already holds this very source item (the catch-up re-copied it before the
          // watch line arrived): nothing to refresh, and writing it again would count it twice.
          if (!tooLate && c !== undefined && index.copiedAt(work[i]!.key, p.t, c)) continue
          const seq = index.latest(work[i]!.key, p.t)
          if (tooLate) ops.push({ i, t: p.t, seq, kind: MD_OURS, cas: p.cas, srcCas: undefined })
          else ops.push({ i, t: p.t, seq, kind: MS, cas: p.cas, srcCas: Buffer.from(c), value: Buffer.from(r.value!), flags: itemFlags(r), ttl })
        }
      })
    }
    // Gone at the source (deleted, expired, evicted): delete memdrain's copy if it is still there.
    for (let i = 0; i < work.length; i++) if (read[i] === 0) for (const p of pairs[i]!) ops.push({ i, t: p.t, seq: index.latest(work[i]!.key, p.t), kind: MD_OURS, cas: p.cas, srcCas: undefined })
    // A record memdrain appended since the op was sent (a transfer's or the catch-up's copy answered meanwhile) describes a newer copy: kept.
    const forgetIfLatest = (op: Op): void => {
      const key = work[op.i]!.key
      if (index.latest(key, op.t) === op.seq) index.forget(key, op.t)
    }
    const replaced = await this.send(ops, work, (op, r) => {
      const key = work[op.i]!.key
      // EX after memdrain's own newer write (the catch-up re-copied it meanwhile): that copy is current.
      if (r === EX && index.latest(key, op.t) !== op.seq) return undefined
      // EX while the catch-up's answer for the same key may still be on its way: look again shortly.
      if (r === EX && op.kind === MS && work[op.i]!.exOnce !== true) {
        // Not stored: the destination holds no write of memdrain's newer than the copy the refresh
        // was sent over (op.cas), so that copy is journaled again as the latest, of a source version
        // now unknown. Left as the refresh's intent (unknown CAS), the next look would take the
        // key's item for a write of memdrain's still in flight and delete it whatever its age.
        if (index.latest(key, op.t) === op.seq) journal.append(key, op.t, UNKNOWN_SOURCE_CAS, Buffer.from(op.cas!, 'latin1'))
        this.defer(key, 20, true)
        return undefined
      }
      if (op.kind === MS) {
        if (r === HD) return
        if (r === EX) return 'replaced'
        forgetIfLatest(op)
        return
      }
      // md … q: silent on success; NF/EX: gone already, or not memdrain's copy any more.
      if (r === 0) this.stats.invalidated++
      // A copy of unknown CAS may be a write whose answer never came (a transfer add or a refresh
      // that timed out at a stalled destination): it can still land after this delete. Its record
      // stays as it is (possibly copied), so the catch-up after the switch compares the key with
      // the source again; only a copy memdrain knew by its CAS is forgotten here.
      if (op.kind === MD_OURS) forgetIfLatest(op)
      return undefined
    })
    if (replaced.length > 0) {
      // Someone else wrote the destination after memdrain's copy: which value is newer is unknowable
      // (a miss is safe), unless that write came after the switch was done (switch-marks.ts): then
      // it is the application's, newer than anything at the source, and stays. What was written
      // before the mark is deleted by the CAS just read, so a write landing meanwhile stays too.
      const marks = this.switchMarks
      const destCas = marks === undefined ? [] : await this.readDestCas(replaced, work)
      const again: Op[] = []
      replaced.forEach((op, o) => {
        if (marks === undefined || marks[op.t] === undefined) again.push({ i: op.i, t: op.t, seq: op.seq, kind: MD_ANY, cas: undefined, srcCas: undefined })
        else if (destCas[o] === undefined || writtenAfterSwitch(destCas[o], marks[op.t])) forgetIfLatest(op)
        else again.push({ i: op.i, t: op.t, seq: op.seq, kind: MD_OURS, cas: destCas[o], srcCas: undefined })
      })
      await this.send(again, work, (op, r) => {
        if (op.kind === MD_ANY || r === 0) this.stats.invalidated++
        forgetIfLatest(op)
        return undefined
      })
    }
    journal.flush()
    this.stats.lastBatchMs = performance.now() - started
  }

  /**
   * Sends ops to their destinations (all in parallel), calls `onDone` per op with its status (0
   * for a silent success), collects the ops it answers 'replaced' for. ms answers HD c<cas>,
   * journaled here.
   */
  private async send(ops: Op[], work: Deferred[], onDone: (op: Op, status: number) => 'replaced' | undefined): Promise<Op[]> {
    const { targets, journal } = this.opts
    const replaced: Op[] = []
    const status = new Int32Array(ops.length)
    const batches = targets.map(() => new NodeBatch())
    const used = new Uint8Array(targets.length)
    ops.forEach((op, o) => {
      const key = work[op.i]!.key
      if (op.kind === MS) {
        // Write-ahead, as the transfer's copies: a refresh whose answer never comes (a stalled
        // destination applies it after the timeout) replaced memdrain's copy with a CAS nobody
        // knows. Journaled as a possible copy first, it is checked against the source later
        // (never taken for "someone else's write" and left, see catch-up.ts).
        op.seq = journal.count
        journal.intent(key, op.t, op.srcCas!)
      }
      const b = batches[op.t]!
      used[op.t] = 1
      // Set-if-CAS (only over memdrain's own copy), answering the new CAS for the journal.
      if (op.kind === MS) b.store(SET_REPORTING_CAS, o, key, 0, key.length, op.value!, 0, op.value!.length, op.flags!, op.ttl!, this.clockOffset[op.t]!, op.cas!)
      else if (op.kind === MD_OURS) b.deleteIfCas(o, key, 0, key.length, op.cas!)
      else b.delete(o, key, 0, key.length)
    })
    journal.flush()
    await Promise.all(
      targets.map(async (_a, t) => {
        if (used[t] === 0) return
        await batches[t]!.send(this.conns[t]!, (r) => {
          const o = r.opaque
          if (o < 0 || o >= ops.length || ops[o]!.t !== t) return
          status[o] = r.status
          const op = ops[o]!
          if (op.kind === MS && r.status === HD) {
            const c = itemCas(r)
            if (c !== undefined) {
              journal.append(work[op.i]!.key, t, op.srcCas!, c)
              this.stats.refreshed++
            }
          }
        })
      }),
    )
    ops.forEach((op, o) => {
      if (onDone(op, status[o]!) === 'replaced') replaced.push(op)
    })
    return replaced
  }

  /** Each op's key's CAS at its destination now (undefined: absent). */
  private async readDestCas(ops: readonly Op[], work: readonly Deferred[]): Promise<(string | undefined)[]> {
    const out = new Array<string | undefined>(ops.length).fill(undefined)
    const batches = this.opts.targets.map(() => new NodeBatch())
    const used = new Uint8Array(this.opts.targets.length)
    ops.forEach((op, o) => {
      const key = work[op.i]!.key
      batches[op.t]!.readCas(o, key, 0, key.length)
      used[op.t] = 1
    })
    await Promise.all(
      this.opts.targets.map(async (_a, t) => {
        if (used[t] === 0) return
        await batches[t]!.send(this.conns[t]!, (r) => {
          const o = r.opaque
          if (o < 0 || o >= ops.length || ops[o]!.t !== t || (r.status !== HD && r.status !== VA)) return
          out[o] = itemCas(r)?.toString('latin1')
        })
      }),
    )
    return out
  }

  private defer(key: Buffer, afterMs = RETRY_MS, exOnce = false): void {
    if (this.deferred.length >= MAX_DEFERRED) {
      this.opts.onLoss?.(`more than ${MAX_DEFERRED} changed keys waited for their copy`)
      return
    }
    const d: Deferred = { key, at: performance.now() + afterMs, unknownOnce: true, exOnce }
    // Kept in due order (the run loop takes them from the front).
    let i = this.deferred.length
    while (i > 0 && this.deferred[i - 1]!.at > d.at) i--
    this.deferred.splice(i, 0, d)
  }
}
