import { writtenAfterSwitch } from './switch-marks.js'
import { ERR, EX, expiring, HD, itemCas, itemFlags, itemTtl, keyEncoding, NF, NodeBatch, readLimits, storeMode, VA, valueFits, type MetaConnection, type MetaReply, type NodeLimits } from '../protocol/index.js'
import { connectWaiting } from '../engine/engine.js'
import { JournalBatch, type CopyJournal } from './copy-journal.js'
import { TokenBucket } from '../engine/throttle.js'
import { UNKNOWN_SOURCE_CAS } from './adopt-copies.js'

/**
 * The copy hand-off's catch-up, after the switch: for every copy in the journal, compare the
 * source's CAS with the one it had when copied.
 *   - unchanged: the copy is current (or the destination has been written since: newer);
 *   - changed:   `ms <key> <len> F T C<dest cas> q` re-copies it, only if nobody wrote the
 *                destination since; EX (somebody did: which value is newer is unknowable, a
 *                client may still have written the source during the switch) → `md <key> q`;
 *                NF (gone from the destination) → nothing, absent is safe;
 *   - gone from the source (deleted before the switch): `md <key> C<dest cas> q`, so the copy is
 *                not resurrected; EX/NF there means the destination moved on: leave it.
 * A record whose destination CAS is unknown (the add found the key already there: an earlier
 * run's copy whose journal record a crash lost, or a client's write) is kept if the destination
 * holds exactly the source's value and flags and the source has not changed since it was read,
 * and invalidated otherwise (`md <key> C<the cas read> q`, so a write made since is kept).
 * Pipelined like the transfer: batches of records, one write per phase and connection, `mn`.
 *
 * Only the latest record of a (key, destination) is acted on (the journal's CopyIndex says
 * which): a key refreshed since its copy has a newer record with the CAS the refresh got. A
 * re-copy journals its new CAS the same way, so the same pass can run before the switch (the
 * delta pass, over the records present when it starts) and again after it. Like every write
 * memdrain makes at a destination, a re-copy is journaled as an intent (a possible copy, CAS
 * unknown) before it is sent: one whose answer never came may still land, and the next pass then
 * compares it with the source instead of taking its CAS for someone else's write.
 */

export interface CatchUpOptions {
  source: string
  /** Destination addresses, indexed like the journal's records. */
  targets: readonly string[]
  journal: CopyJournal
  /** Records per second, 0 = unthrottled. */
  rate: number
  batchSize?: number | undefined
  inFlight?: number | undefined
  signal?: AbortSignal | undefined
  /** How long a server that does not answer (stalled, restarting) is waited for (ms); default JOB_DEFAULTS.downWaitMs. */
  downWaitMs?: number | undefined
  onProgress?: ((r: CatchUpResult) => void) | undefined
  /** Read only the first `upTo` records (a pass over what was journaled when it started). */
  upTo?: number | undefined
  /** Start at this record (a pass over what was journaled since an earlier pass started). */
  from?: number | undefined
  /**
   * A pass before the switch (the delta pass): a copy of unknown CAS (a write whose answer never
   * came may still land at a stalled destination) stays "possibly copied" after this pass deleted
   * it or found it absent, so the catch-up after the switch compares it with the source again.
   */
  keepUnknown?: boolean | undefined
  /**
   * After the switch: first a pass that reads only the source's CAS (no values) and deletes, by
   * the CAS of memdrain's copy, every copy whose key is gone at the source (deleted after its
   * copy: before memcached 1.6.20 the follower does not see deletions); then the re-copy pass,
   * over the copies that changed (and those of unknown CAS) alone. A deleted key stops being
   * served as soon as the first pass reaches it, not when the pass that also moves values does
   * (the probe counts a quarter of a key against `rate`).
   * Changed copies are not deleted first: a re-copy needs memdrain's copy still there (the CAS
   * rule: a key without it may have been deleted by an application since the switch).
   */
  invalidateFirst?: boolean | undefined
  /**
   * Per destination, when the switch was done in this process: the CAS above which an item was
   * written after it (switch-marks.ts). A copy changed on both sides whose destination write came
   * after the switch is the application's newer write: kept, not deleted.
   */
  switchMarks?: readonly (bigint | undefined)[] | undefined
  /** Called once the invalidating pass is done (invalidateFirst), before the re-copy pass. */
  onInvalidated?: ((r: CatchUpResult) => void | Promise<void>) | undefined
}

export interface CatchUpResult {
  /** Journal records looked at. */
  checked: number
  /** The source still had the value that was copied. */
  unchanged: number
  /** Copies replaced with the source's newer value. */
  caughtUp: number
  /** Copies deleted at the destination: the source deleted the key, or both sides changed, or the copy was unknown. */
  invalidated: number
  /** Copies the destination had already replaced or dropped since (left alone). */
  superseded: number
  /** Records that could not be checked or fixed (a stale copy may remain). */
  failed: number
  interrupted: boolean
  samples: { key: string; reason: string }[]
}

/** Re-copies are set-if-CAS (only over memdrain's own copy); `c`: the answer carries the new CAS, for the journal. */
const SET = storeMode('set')
const SET_REPORTING_CAS = storeMode('set', true)

// Per record.
const UNCHANGED = 0
const RECOPY = 1
const DROP_IF_OURS = 2
const INVALIDATE = 3
const INVALIDATE_NEXT = 4
const SUPERSEDED = 5
const FAILED = 6
/** Unknown copy found identical to the source's current value: it is current. */
const KEEP = 7
/** A newer record of the same key and destination exists (or memdrain's copy is gone): nothing to do here. */
const NOT_LATEST = 8
/** Invalidating pass: changed at the source (or of unknown CAS): left for the re-copy pass. */
const DEFERRED = 9

/**
 * The two passes of invalidateFirst: `probe` (CAS only, deletes what is gone, marks the rest
 * for later by record number) and `recopy` (only the marked records).
 */
interface Phase {
  kind: 'probe' | 'recopy'
  /** Per record number: 1 = the re-copy pass looks at it. */
  marked: Uint8Array
}

export async function runCatchUp(opts: CatchUpOptions): Promise<CatchUpResult> {
  const result: CatchUpResult = { checked: 0, unchanged: 0, caughtUp: 0, invalidated: 0, superseded: 0, failed: 0, interrupted: false, samples: [] }
  const source = await connectWaiting(opts.source, 'source', opts.downWaitMs, opts.signal)
  const conns: MetaConnection[] = []
  try {
    for (const t of opts.targets) conns.push(await connectWaiting(t, 'destination', opts.downWaitMs, opts.signal))
    const limits = await Promise.all(conns.map(readLimits))
    const bucket = new TokenBucket(opts.rate)
    const batchSize = opts.batchSize ?? 500
    let lastProgress = 0
    const pass = async (phase: Phase | undefined): Promise<void> => {
      const reader = opts.journal.reader(opts.upTo, opts.from)
      const worker = async (): Promise<void> => {
        const w = new CatchUpBatch(source, conns, limits, batchSize, result, opts.journal, opts.keepUnknown === true, phase, opts.switchMarks)
        while (!opts.signal?.aborted) {
          const n = reader.next(w.batch)
          if (n === 0) return
          // Only the latest record of a key is acted on (and read): the throttle counts those; a
          // CAS probe (some 30 bytes each way, no value) as a quarter of a key.
          const live = w.live()
          await bucket.take(phase?.kind === 'probe' ? Math.ceil(live / 4) : live, opts.signal)
          await w.run()
          if (opts.onProgress !== undefined && performance.now() - lastProgress > 250) {
            lastProgress = performance.now()
            opts.onProgress(result)
          }
        }
      }
      await Promise.all(Array.from({ length: opts.inFlight ?? 4 }, worker))
    }
    if (opts.invalidateFirst === true) {
      const marked = new Uint8Array(opts.journal.count)
      await pass({ kind: 'probe', marked })
      await opts.onInvalidated?.(result)
      if (!opts.signal?.aborted) await pass({ kind: 'recopy', marked })
    } else {
      await pass(undefined)
    }
    result.interrupted = opts.signal?.aborted === true
    opts.onProgress?.(result)
    return result
  } finally {
    await Promise.all([source, ...conns].map((c) => c.close().catch(() => undefined)))
  }
}

/** One worker's scratch: a batch of records and its per-record state, reused. */
class CatchUpBatch {
  readonly batch: JournalBatch
  private readonly state: Uint8Array
  private readonly answered: Uint8Array
  private readonly sourceBatch = new NodeBatch()
  private readonly targetBatches: NodeBatch[]
  private readonly targetUsed: Uint8Array
  /** A target answered an error line (no opaque): which of its re-copies failed is unknown. */
  private readonly targetError: Uint8Array
  /** The source CAS each re-copy was read with (journaled with the destination's new CAS). */
  private readonly readCas: (Buffer | undefined)[]
  /** The record describing memdrain's write of each key in flight: its re-copy's intent, or the record read. */
  private readonly ownSeq: Float64Array
  /** 1: the re-copy met EX, someone else wrote the destination since memdrain's copy. */
  private readonly replacedAt: Uint8Array

  constructor(
    private readonly source: MetaConnection,
    private readonly conns: readonly MetaConnection[],
    private readonly limits: readonly NodeLimits[],
    capacity: number,
    private readonly result: CatchUpResult,
    private readonly journal: CopyJournal,
    private readonly keepUnknown: boolean,
    private readonly phase: Phase | undefined,
    private readonly switchMarks: readonly (bigint | undefined)[] | undefined,
  ) {
    this.replacedAt = new Uint8Array(capacity)
    this.readCas = new Array<Buffer | undefined>(capacity)
    this.ownSeq = new Float64Array(capacity)
    this.batch = new JournalBatch(capacity)
    this.state = new Uint8Array(capacity)
    this.answered = new Uint8Array(capacity)
    this.targetBatches = conns.map(() => new NodeBatch())
    this.targetUsed = new Uint8Array(conns.length)
    this.targetError = new Uint8Array(conns.length)
  }

  /** Whether record i of the batch is acted on in this pass: the latest of its key (and, in a re-copy pass, marked by the probe). */
  private acted(i: number): boolean {
    const { batch } = this
    if (this.journal.index.latest(batch.key(i), batch.target[i]!) !== batch.seq[i]) return false
    return this.phase?.kind !== 'recopy' || this.phase.marked[batch.seq[i]!] === 1
  }

  /** Records of the batch this pass acts on (what the throttle counts). */
  live(): number {
    let n = 0
    for (let i = 0; i < this.batch.count; i++) if (this.acted(i)) n++
    return n
  }

  async run(): Promise<void> {
    const { batch, result } = this
    const src = this.sourceBatch
    const probe = this.phase?.kind === 'probe'
    this.targetUsed.fill(0)
    this.replacedAt.fill(0)
    let toRead = 0
    const unknown: number[] = []
    for (let i = 0; i < batch.count; i++) {
      this.answered[i] = 0
      this.ownSeq[i] = batch.seq[i]!
      if (!this.acted(i)) {
        this.state[i] = NOT_LATEST
        continue
      }
      this.state[i] = UNCHANGED
      if (batch.target[i]! < this.conns.length && keyEncoding(batch.key(i)) !== 'unaddressable' && !batch.destCasKnown(i)) {
        if (!probe) unknown.push(i)
        else this.defer(i) // compared value by value in the re-copy pass
      }
    }
    if (unknown.length > 0) await this.resolveUnknown(unknown)
    for (let i = 0; i < batch.count; i++) {
      const key = batch.key(i)
      if (this.state[i] === NOT_LATEST || this.state[i] === DEFERRED) continue
      if (batch.target[i]! >= this.conns.length || keyEncoding(key) === 'unaddressable') {
        this.state[i] = FAILED
        this.sample(key, 'journal record does not match this drain (destination or key)')
        continue
      }
      if (!batch.destCasKnown(i)) continue // settled by resolveUnknown
      this.state[i] = UNCHANGED
      // The probe reads the CAS alone: no value moves until a copy is known to need one.
      if (probe) src.readCas(i, key, 0, key.length)
      else src.read(i, key, 0, key.length)
      toRead++
    }

    // Phase 1: read the source.
    if (toRead > 0) {
      await src.send(this.source, this.onSource)
      for (let i = 0; i < batch.count; i++) {
        if (this.state[i] !== UNCHANGED || this.answered[i] === 1 || !batch.destCasKnown(i)) continue
        // No value: the key was deleted (or expired) at the source after it was copied.
        this.state[i] = DROP_IF_OURS
        this.queueDelete(i, true)
      }
    } else {
      src.reset()
    }

    // Phase 2: re-copy, drop, invalidate at the destinations (the re-copies' intents on file first).
    this.journal.flush()
    await this.sendToTargets(this.onTarget)
    for (let i = 0; i < batch.count; i++) {
      const s = this.state[i]
      if (s === RECOPY && this.targetError[batch.target[i]!] === 1) {
        // An error line cannot be matched to its command: re-copies there may not have landed.
        this.state[i] = INVALIDATE_NEXT
      }
    }

    // Phase 3: delete the copies both sides changed (but an application's write made after the switch).
    if (this.switchMarks !== undefined) await this.keepWrittenAfterSwitch(this.switchMarks)
    let next = 0
    for (let i = 0; i < batch.count; i++) {
      if (this.state[i] !== INVALIDATE_NEXT) continue
      this.state[i] = INVALIDATE
      this.queueDelete(i, false)
      next++
    }
    // (keepWrittenAfterSwitch may have queued deletes by CAS as well.)
    if (next > 0 || this.targetUsed.includes(1)) await this.sendToTargets(this.onTarget)

    for (let i = 0; i < batch.count; i++) {
      const s = this.state[i]
      // memdrain's copy is gone (deleted, or found replaced): later passes leave the key alone;
      // unless its CAS was unknown and the switch is still to come (see keepUnknown).
      const gone = s === DROP_IF_OURS || s === INVALIDATE || s === SUPERSEDED
      if (gone && !(this.keepUnknown && !batch.destCasKnown(i))) this.journal.index.forget(batch.key(i), batch.target[i]!)
      // A deferred record is counted by the re-copy pass, which acts on it.
      if (s !== NOT_LATEST && s !== DEFERRED) result.checked++
      switch (s) {
        case NOT_LATEST:
        case DEFERRED:
          break
        case UNCHANGED:
        case KEEP:
          result.unchanged++
          break
        case RECOPY:
          result.caughtUp++
          break
        case DROP_IF_OURS:
        case INVALIDATE:
          result.invalidated++
          break
        case SUPERSEDED:
          result.superseded++
          break
        default:
          result.failed++
      }
    }
  }

  /**
   * Records whose destination CAS is unknown: read the destination and the source; keep a copy
   * identical to a source unchanged since the copy, invalidate the rest by the CAS just read
   * (queued for phase 2), and leave keys the destination no longer has.
   */
  private async resolveUnknown(unknown: readonly number[]): Promise<void> {
    const { batch } = this
    const dest = new Map<number, { value: Buffer; flags: number; cas: Buffer }>()
    for (const i of unknown) {
      this.state[i] = INVALIDATE // a failed read below turns it into FAILED (sendToTargets)
      const t = batch.target[i]!
      this.targetBatches[t]!.read(i, batch.buf, batch.keyStart[i]!, batch.keyEnd[i]!)
      this.targetUsed[t] = 1
    }
    await this.sendToTargets((t, r) => {
      const i = r.opaque
      if (r.status !== VA || i < 0 || i >= batch.count || batch.target[i] !== t) return
      const cas = itemCas(r)
      if (cas !== undefined) dest.set(i, { value: Buffer.from(r.value!), flags: itemFlags(r), cas: Buffer.from(cas) })
    })
    const src = this.sourceBatch
    let toRead = 0
    for (const i of unknown) {
      if (this.state[i] === FAILED) continue
      if (!dest.has(i)) {
        this.state[i] = SUPERSEDED // gone from the destination: absent is safe
        continue
      }
      src.read(i, batch.buf, batch.keyStart[i]!, batch.keyEnd[i]!)
      toRead++
    }
    if (toRead === 0) {
      src.reset()
      return
    }
    await src.send(this.source, (r) => {
      const i = r.opaque
      if (r.status !== VA || i < 0 || i >= batch.count) return
      const d = dest.get(i)
      const cas = itemCas(r)
      // An adopted record (lost journal) knows no source CAS: the value and flags alone decide.
      const sameSource = cas !== undefined && (cas.equals(batch.sourceCas(i)) || batch.sourceCas(i).equals(UNKNOWN_SOURCE_CAS))
      if (d !== undefined && sameSource && itemFlags(r) === d.flags && r.value!.equals(d.value)) {
        this.state[i] = KEEP
        // Now known: later refreshes and passes can write it with its CAS.
        this.journal.append(batch.key(i), batch.target[i]!, cas!, d.cas)
      }
    })
    for (const i of unknown) {
      if (this.state[i] !== INVALIDATE) continue
      const d = dest.get(i)!
      const t = batch.target[i]!
      this.targetBatches[t]!.deleteIfCas(i, batch.buf, batch.keyStart[i]!, batch.keyEnd[i]!, d.cas)
      this.targetUsed[t] = 1
    }
  }

  /**
   * Copies changed on both sides (the re-copy met EX): read the destination's CAS; a write made
   * after the switch (above the mark) is the application's and stays, what is older is deleted by
   * the CAS just read (a write landing meanwhile stays too), an absent key is left absent.
   */
  private async keepWrittenAfterSwitch(marks: readonly (bigint | undefined)[]): Promise<void> {
    const { batch } = this
    const cas = new Map<number, string>()
    const asked: number[] = []
    this.targetUsed.fill(0)
    for (let i = 0; i < batch.count; i++) {
      if (this.state[i] !== INVALIDATE_NEXT || this.replacedAt[i] !== 1 || marks[batch.target[i]!] === undefined) continue
      const t = batch.target[i]!
      this.targetBatches[t]!.readCas(i, batch.buf, batch.keyStart[i]!, batch.keyEnd[i]!)
      this.targetUsed[t] = 1
      asked.push(i)
    }
    if (asked.length === 0) return
    await this.sendToTargets((t, r) => {
      const i = r.opaque
      if (i < 0 || i >= batch.count || batch.target[i] !== t || (r.status !== HD && r.status !== VA)) return
      const c = itemCas(r)
      if (c !== undefined) cas.set(i, c.toString('latin1'))
    })
    for (const i of asked) {
      if (this.targetError[batch.target[i]!] === 1) continue // left to the delete below
      const c = cas.get(i)
      if (c === undefined || writtenAfterSwitch(c, marks[batch.target[i]!])) {
        this.state[i] = SUPERSEDED
        continue
      }
      this.state[i] = INVALIDATE
      this.targetBatches[batch.target[i]!]!.deleteIfCas(i, batch.buf, batch.keyStart[i]!, batch.keyEnd[i]!, c)
      this.targetUsed[batch.target[i]!] = 1
    }
  }

  /** Probe pass: left for the re-copy pass. */
  private defer(i: number): void {
    this.state[i] = DEFERRED
    this.phase!.marked[this.batch.seq[i]!] = 1
  }

  private queueDelete(i: number, ifOurs: boolean): void {
    const { batch } = this
    const t = batch.target[i]!
    if (ifOurs) this.targetBatches[t]!.deleteIfCas(i, batch.buf, batch.keyStart[i]!, batch.keyEnd[i]!, batch.destCas(i))
    else this.targetBatches[t]!.delete(i, batch.buf, batch.keyStart[i]!, batch.keyEnd[i]!)
    this.targetUsed[t] = 1
  }

  private async sendToTargets(onReply: (t: number, r: MetaReply) => void): Promise<void> {
    const { batch } = this
    const sends: Promise<void>[] = []
    this.targetError.fill(0)
    for (let t = 0; t < this.conns.length; t++) {
      if (this.targetUsed[t] === 0) continue
      sends.push(this.targetBatches[t]!.send(this.conns[t]!, (r) => onReply(t, r)))
    }
    const results = await Promise.allSettled(sends)
    let w = 0
    for (let t = 0; t < this.conns.length; t++) {
      if (this.targetUsed[t] === 0) continue
      const r = results[w++]!
      this.targetUsed[t] = 0
      if (r.status === 'fulfilled') continue
      for (let i = 0; i < batch.count; i++) {
        if (batch.target[i] !== t) continue
        const s = this.state[i]
        if (s === RECOPY || s === DROP_IF_OURS || s === INVALIDATE) {
          this.state[i] = FAILED
          this.sample(batch.key(i), `${this.conns[t]!.server}: ${(r.reason as Error).message}`)
        }
      }
    }
  }

  /** Phase 1 replies: compare the CAS; queue a CAS-checked re-copy of what changed. */
  private readonly onSource = (r: MetaReply): void => {
    const i = r.opaque
    const { batch } = this
    if (i < 0 || i >= batch.count) {
      if (r.status === ERR) this.sample(Buffer.alloc(0), `source: ${r.line()}`)
      return
    }
    if (r.status !== VA && r.status !== HD) return
    this.answered[i] = 1
    const cas = itemCas(r)
    const copied = batch.sourceCas(i)
    if (cas !== undefined && cas.equals(copied)) return
    if (this.phase?.kind === 'probe') return this.defer(i)
    const ttl = itemTtl(r)
    const t = batch.target[i]!
    if (expiring(ttl) || !valueFits(r.valueEnd - r.valueStart, this.limits[t]!.itemSizeMax)) {
      // About to expire, or too large for the destination now: drop the stale copy instead.
      this.state[i] = INVALIDATE
      this.queueDelete(i, false)
      return
    }
    this.readCas[i] = cas === undefined ? undefined : Buffer.from(cas)
    // Write-ahead, as the transfer's copies: a re-copy whose answer never comes may still land (a
    // stalled destination applies it later) and change the copy's CAS; as a possible copy it is
    // compared with the source by the next pass instead of being taken for someone else's write.
    this.ownSeq[i] = this.journal.count
    this.journal.intent(batch.key(i), t, this.readCas[i] ?? UNKNOWN_SOURCE_CAS)
    // `c`: the answer carries the new CAS, journaled (HD c<cas>) so the next pass knows the copy.
    const { buf, keyStart, keyEnd } = batch
    const mode = cas === undefined ? SET : SET_REPORTING_CAS
    this.targetBatches[t]!.store(mode, i, buf, keyStart[i]!, keyEnd[i]!, r.buf, r.valueStart, r.valueEnd, itemFlags(r), ttl, this.limits[t]!.clockOffset, batch.destCas(i))
    this.targetUsed[t] = 1
    this.state[i] = RECOPY
  }

  /** Phase 2 and 3 replies; with `q` only what did not succeed answers. */
  private readonly onTarget = (t: number, r: MetaReply): void => {
    const i = r.opaque
    const { batch } = this
    if (i < 0 || i >= batch.count || batch.target[i] !== t) {
      if (r.status === ERR) {
        this.targetError[t] = 1
        this.sample(Buffer.alloc(0), `${this.conns[t]!.server}: ${r.line()}`)
      }
      return
    }
    const s = this.state[i]
    if (r.status === HD) {
      const c = itemCas(r)
      const read = this.readCas[i]
      if (s === RECOPY && c !== undefined && read !== undefined) this.journal.append(batch.key(i), t, read, c)
      return
    }
    if (s === RECOPY) {
      // EX: written at the destination since the copy, and changed at the source too → invalidate;
      // unless the writer was memdrain's own refresher (a newer record of the key): then it is current.
      if (r.status === EX && this.journal.index.latest(batch.key(i), t) !== this.ownSeq[i]) this.state[i] = NOT_LATEST
      else if (r.status === NF) this.state[i] = SUPERSEDED
      else {
        this.state[i] = INVALIDATE_NEXT
        if (r.status === EX) this.replacedAt[i] = 1
      }
      if (r.status !== EX && r.status !== NF) this.sample(batch.key(i), `${this.conns[t]!.server}: ${r.line()}`)
    } else if (s === DROP_IF_OURS || s === INVALIDATE) {
      if (r.status === EX && this.journal.index.latest(batch.key(i), t) !== this.ownSeq[i]) this.state[i] = NOT_LATEST
      else if (r.status === EX || r.status === NF) this.state[i] = SUPERSEDED
      else {
        this.state[i] = FAILED
        this.sample(batch.key(i), `${this.conns[t]!.server}: ${r.line()}`)
      }
    }
  }

  private sample(key: Uint8Array, reason: string): void {
    if (this.result.samples.length < 20) this.result.samples.push({ key: Buffer.from(key).toString('utf8'), reason })
  }
}
