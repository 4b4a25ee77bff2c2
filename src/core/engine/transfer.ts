import type { FingerprintSet } from './fingerprint-set.js'
import {
  copyItemCas,
  ERR,
  EX,
  expiring,
  HD,
  itemCas,
  itemFlags,
  itemTtl,
  keyEncodingAt,
  NF,
  NodeBatch,
  NS,
  storeMode,
  VA,
  valueFits,
  type MetaConnection,
  type MetaReply,
  type StoreMode,
} from '../protocol/index.js'
import type { KeyBatch } from './key-batch.js'
import type { Tally } from './tally.js'

/** Where a key goes: fills `out` with destination ids (new chain members); returns how many. 0 = the key stays. */
export type RouteFn = (key: Buffer, out: Int32Array, offset: number) => number

export interface TransferTarget {
  readonly address: string
  readonly conn: MetaConnection
  /** `ok` to send; anything else and keys for it fail with that reason. */
  state(): 'ok' | 'full' | 'down'
  /** Reserves room for an item of this size (from the dump); false = no room above --min-free: do not send. */
  reserve(itemSize: number): boolean
  /** The writes holding these reservations were answered. */
  settle(itemSize: number): void
  itemSizeMax(): number
  /** Server time minus local time, seconds. */
  clockOffset(): number
}

/**
 * Copy mode: called for every key written at a destination, with the CAS the source had when it
 * was read and the CAS the destination gave the copy (`undefined`: the destination already held
 * the key, the add was not stored). Both are decimal digits, views valid only during the call.
 */
export type CopiedFn = (key: Buffer, target: number, sourceCas: Uint8Array, destCas: Uint8Array | undefined) => void

/**
 * Copy mode: the journal's write-ahead. `intent` is called for every (key, destination) about to
 * be written, with the source CAS the value was read with (digits, a view valid during the call);
 * `flush` before the writes are sent: once it returns the intents are on file, and if it throws
 * (a full disk) nothing is sent and the job stops.
 */
export interface WriteAhead {
  intent(key: Buffer, target: number, sourceCas: Uint8Array): void
  flush(): void
}

export interface TransferOptions {
  source: MetaConnection
  targets: readonly TransferTarget[]
  route: RouteFn
  /** Longest chain route() can return. */
  maxChain: number
  /** `move`: add, then delete the source copy with its CAS. `copy`: add (or set), the source keeps its items. */
  mode: 'move' | 'copy'
  /** `add` never overwrites what a destination already holds; `set` does (mirror: the passive is never read). */
  store: 'add' | 'set'
  /** Skip keys whose remaining TTL is below this (seconds). */
  minTtl: number
  tally: Tally
  onCopied?: CopiedFn | undefined
  writeAhead?: WriteAhead | undefined
  /**
   * Move mode: keys whose source delete was put off once. A key that every destination already
   * held (NS) may hold another mover's copy (a PoolClient moving it on a read) whose CAS delete at
   * the source is in flight: deleting the source first makes that mover see it gone (NF) and
   * withdraw its copy, a needless miss. So the first time, the source copy is left to that mover
   * (the key is neither counted nor marked done); a later pass that still finds it deletes it as
   * before. Waiting changes only when the engine acts, never what it may do. Without the set,
   * the source is deleted at once.
   */
  deferred?: FingerprintSet | undefined
}

/** Longest CAS in decimal (2^64 - 1). */
const CAS_DIGITS = 20
// Per (key, destination) outcome.
const STORED = 0
const IN_PLACE = 1
const FAILED = 2
/** The batch to this destination failed as a whole (connection lost, timed out): the destination is down, not refusing. */
const LOST = 3
// Per key, `read`.
const NOT_READ = 0
const QUEUED = 1
const KEY_FAILED = 2
const CONFLICT = 3
const SKIPPED = 4
const DEFERRED = 5
// Per target, for the batch being sent.
const T_OK = 0
const T_FULL = 1
const T_DOWN = 2


/**
 * Moves one batch of keys with pipelined node batches (protocol/node.ts): one write per phase
 * and connection, replies matched by id, no per-key promise, object or string:
 *   1. source:        read for move (value, flags, TTL, CAS; the source's LRU is not bumped)
 *   2. destinations:  add (a newer value there is never overwritten), or set for a mirror
 *   3. source (move): delete-if-CAS (EX/NF: it changed since read → invalidate the copies)
 * A worker owns one BatchTransfer and reuses its scratch arrays for every batch.
 */
export class BatchTransfer {
  private readonly dests: Int32Array
  private readonly destCount: Uint8Array
  private readonly outcome: Uint8Array
  private readonly read: Uint8Array
  private readonly valueLen: Float64Array
  /** The CAS each key had when read, as digits: key i at i * CAS_DIGITS, casLen[i] long. */
  private readonly cas: Buffer
  private readonly casLen: Uint8Array
  private readonly sourceBatch = new NodeBatch()
  /** Per target, the writes of the batch; after it is sent its values stay intact until the next batch is built (`sent`). */
  private readonly targetBatches: NodeBatch[]
  private readonly targetUsed: Uint8Array
  /** Room reserved on each target by this batch (item sizes), settled once its writes are answered. */
  private readonly targetReserved: Float64Array
  /** Per target, read once per batch: T_OK/T_FULL/T_DOWN, item_size_max, clock offset. */
  private readonly targetState: Uint8Array
  private readonly targetItemMax: Float64Array
  private readonly targetClock: Float64Array
  /** Where each (key, destination) slot's value ends in the batch sent to its target (for withdrawing only our own copy). */
  private readonly valueEnd: Uint32Array
  /** The client flags each key was written with. */
  private readonly flagsOf: Float64Array
  /** Conflicts only: the read-backs and CAS-checked deletes (the target batches must stay intact meanwhile). */
  private checkBatches: NodeBatch[] | undefined
  private dropBatches: NodeBatch[] | undefined
  /** add or set, quiet, or answering the new CAS when copies are reported. */
  private readonly storeMode: StoreMode
  private batch: KeyBatch | undefined

  constructor(
    private readonly opts: TransferOptions,
    capacity: number,
  ) {
    this.dests = new Int32Array(capacity * opts.maxChain)
    this.destCount = new Uint8Array(capacity)
    this.outcome = new Uint8Array(capacity * opts.maxChain)
    this.read = new Uint8Array(capacity)
    this.valueLen = new Float64Array(capacity)
    this.cas = Buffer.alloc(capacity * CAS_DIGITS)
    this.casLen = new Uint8Array(capacity)
    this.targetBatches = opts.targets.map(() => new NodeBatch())
    this.targetUsed = new Uint8Array(opts.targets.length)
    this.targetReserved = new Float64Array(opts.targets.length)
    this.targetState = new Uint8Array(opts.targets.length)
    this.targetItemMax = new Float64Array(opts.targets.length)
    this.targetClock = new Float64Array(opts.targets.length)
    this.valueEnd = new Uint32Array(capacity * opts.maxChain)
    this.flagsOf = new Float64Array(capacity)
    this.storeMode = storeMode(opts.store, opts.onCopied !== undefined)
  }

  /**
   * Whether key i of the last batch is done with: moved, in place, or skipped for good (gone,
   * expiring, too large). False for a key that failed (destination full, down or erroring): a
   * later pass should try it again.
   */
  settled(i: number): boolean {
    return this.read[i] !== KEY_FAILED
  }

  /** Whether key i of the last batch was skipped for good (too large, expiring, unaddressable): it stays where it is. */
  skippedKey(i: number): boolean {
    return this.read[i] === SKIPPED
  }

  async run(batch: KeyBatch): Promise<void> {
    this.batch = batch
    this.targetReserved.fill(0)
    try {
      await this.transfer(batch)
    } finally {
      const { targets } = this.opts
      for (let t = 0; t < targets.length; t++) if (this.targetReserved[t]! > 0) targets[t]!.settle(this.targetReserved[t]!)
    }
  }

  private async transfer(batch: KeyBatch): Promise<void> {
    const { opts } = this
    const { tally, targets, maxChain } = opts
    const src = this.sourceBatch
    const keys = batch.keys
    for (let t = 0; t < targets.length; t++) {
      const target = targets[t]!
      const state = target.state()
      this.targetState[t] = state === 'ok' ? T_OK : state === 'full' ? T_FULL : T_DOWN
      this.targetItemMax[t] = target.itemSizeMax()
      this.targetClock[t] = target.clockOffset()
    }
    let toRead = 0
    for (let i = 0; i < batch.count; i++) {
      this.read[i] = NOT_READ
      this.casLen[i] = 0
      const base = i * maxChain
      let n = batch.destCount[i]!
      // Routed when spooled (the same placement): reuse it rather than hash the key again.
      if (n > 0 && batch.maxChain === maxChain) for (let j = 0; j < n; j++) this.dests[base + j] = batch.dests[base + j]!
      else n = opts.route(batch.key(i), this.dests, base)
      this.destCount[i] = n
      if (n === 0) continue
      const ks = batch.keyStart[i]!
      const ke = batch.keyEnd[i]!
      if (keyEncodingAt(keys, ks, ke) === 'unaddressable') {
        tally.skipped.unaddressable++
        tally.sample(batch.key(i), 'unaddressable key (over 250 bytes, or over 186 bytes needing base64)')
        this.destCount[i] = 0
        this.read[i] = SKIPPED
        continue
      }
      let blocked = false
      for (let j = 0; j < n; j++) {
        const t = this.dests[base + j]!
        let state = this.targetState[t]!
        if (state === T_OK) {
          if (targets[t]!.reserve(batch.size[i]!)) {
            this.targetReserved[t]! += batch.size[i]!
            continue
          }
          // Full from here on, for this batch too (as the guard now says).
          state = this.targetState[t] = T_FULL
        }
        tally.failedBy[state === T_FULL ? 'destination-full' : 'destination-down']++
        tally.perDestination[t]!.failed++
        blocked = true
        break
      }
      if (blocked) {
        this.destCount[i] = 0
        this.read[i] = KEY_FAILED
        continue
      }
      src.readForMove(i, keys, ks, ke)
      toRead++
    }
    if (toRead === 0) {
      src.reset()
      return
    }
    this.targetUsed.fill(0)
    // Batch buffers are reused: each one's previous batch was answered before this one is built.
    await src.send(opts.source, this.onRead)
    tally.processed += toRead
    for (let i = 0; i < batch.count; i++) {
      // Asked for and not answered (`q` hides EN): deleted, expired or evicted since the dump.
      if (this.read[i] === NOT_READ && this.destCount[i]! > 0) tally.skipped.gone++
    }

    // Phase 2: write to the destinations, all in parallel (journaled first: see WriteAhead).
    opts.writeAhead?.flush()
    const writes: Promise<void>[] = []
    for (let t = 0; t < targets.length; t++) {
      if (this.targetUsed[t] === 0) continue
      writes.push(this.targetBatches[t]!.send(targets[t]!.conn, (r) => this.onStored(t, r)))
    }
    const results = await Promise.allSettled(writes)
    let w = 0
    for (let t = 0; t < targets.length; t++) {
      if (this.targetUsed[t] === 0) continue
      if (results[w++]!.status === 'rejected') this.failTarget(t)
    }

    // Tally, and phase 3 for a move: delete the source copy if it is still the one we read.
    let toDelete = 0
    for (let i = 0; i < batch.count; i++) {
      if (this.read[i] !== QUEUED) continue
      const n = this.destCount[i]!
      let stored = 0
      let inPlace = 0
      let failed = 0
      let lost = 0
      for (let j = 0; j < n; j++) {
        const o = this.outcome[i * maxChain + j]
        if (o === STORED) {
          stored++
          const per = tally.perDestination[this.dests[i * maxChain + j]!]!
          per.keys++
          per.bytes += this.valueLen[i]!
        } else if (o === IN_PLACE) inPlace++
        else if (o === FAILED) failed++
        else if (o === LOST) lost++
      }
      if (failed > 0 || lost > 0) {
        // A destination that stopped answering is down (the engine waits for it and tries again); an error answer is an error.
        tally.failedBy[failed > 0 ? 'destination-error' : 'destination-down']++
        this.read[i] = KEY_FAILED
        continue
      }
      const deferred = opts.deferred
      if (opts.mode === 'move' && stored === 0 && deferred !== undefined && deferred.add(batch.keys, batch.keyStart[i]!, batch.keyEnd[i]!)) {
        // In place at every destination, seen for the first time: see TransferOptions.deferred.
        this.read[i] = DEFERRED
        for (let j = 0; j < n; j++) if (this.outcome[i * maxChain + j] === IN_PLACE) tally.perDestination[this.dests[i * maxChain + j]!]!.inPlace--
        continue
      }
      if (opts.mode === 'move') {
        const c = i * CAS_DIGITS
        src.deleteIfCas(i, batch.keys, batch.keyStart[i]!, batch.keyEnd[i]!, this.cas, c, c + this.casLen[i]!)
        toDelete++
      }
      if (stored > 0) {
        tally.moved++
        tally.bytes += this.valueLen[i]! * stored
      } else if (inPlace > 0) {
        tally.inPlace++
      }
    }
    if (toDelete === 0) {
      src.reset()
      return
    }
    let conflicts = 0
    let gone = 0
    await src.send(opts.source, (r) => {
      if ((r.status === EX || r.status === NF) && r.opaque >= 0 && r.opaque < batch.count) {
        this.read[r.opaque] = CONFLICT
        // EX: rewritten since read (the next pass moves it); NF: deleted since read (nothing left to move).
        if (r.status === EX) conflicts++
        else gone++
      }
    })
    tally.skipped.gone += gone
    if (conflicts + gone > 0) await this.invalidate(conflicts)
  }

  /** Phase 1 replies: queue the value for each destination (copied straight into its payload). */
  private readonly onRead = (r: MetaReply): void => {
    const i = r.opaque
    const batch = this.batch!
    const { opts } = this
    if (r.status !== VA || i < 0 || i >= batch.count) {
      if (r.status === ERR) {
        opts.tally.failedBy['source-error']++
        opts.tally.sample(Buffer.alloc(0), r.line())
      }
      return
    }
    const valueStart = r.valueStart
    const valueEnd = r.valueEnd
    const valueLen = valueEnd - valueStart
    const ttl = itemTtl(r)
    if (expiring(ttl, opts.minTtl)) {
      opts.tally.skipped.expiring++
      this.read[i] = SKIPPED
      return
    }
    const n = this.destCount[i]!
    const base = i * opts.maxChain
    for (let j = 0; j < n; j++) {
      if (!valueFits(valueLen, this.targetItemMax[this.dests[base + j]!]!)) {
        opts.tally.skipped['too-large']++
        opts.tally.sample(batch.key(i), `value of ${valueLen} bytes exceeds item_size_max of ${opts.targets[this.dests[base + j]!]!.address}`)
        this.read[i] = SKIPPED
        return
      }
    }
    // Kept as digits: it can exceed 2^53.
    const casLen = copyItemCas(r, this.cas, i * CAS_DIGITS, CAS_DIGITS)
    if (casLen <= 0) {
      opts.tally.failedBy['source-error']++
      opts.tally.sample(batch.key(i), `no CAS in ${r.line()}`)
      this.read[i] = KEY_FAILED
      return
    }
    this.casLen[i] = casLen
    this.valueLen[i] = valueLen
    this.read[i] = QUEUED
    const ks = batch.keyStart[i]!
    const ke = batch.keyEnd[i]!
    const f = itemFlags(r)
    this.flagsOf[i] = f
    const wa = opts.writeAhead
    for (let j = 0; j < n; j++) {
      const t = this.dests[base + j]!
      if (wa !== undefined) wa.intent(batch.key(i), t, this.cas.subarray(i * CAS_DIGITS, i * CAS_DIGITS + casLen))
      const writes = this.targetBatches[t]!
      writes.store(this.storeMode, base + j, batch.keys, ks, ke, r.buf, valueStart, valueEnd, f, ttl, this.targetClock[t]!)
      this.valueEnd[base + j] = writes.length - 2
      this.outcome[base + j] = STORED
      this.targetUsed[t] = 1
    }
  }

  /** Phase 2 replies. With `q` a stored key answers nothing (copy mode asks for its CAS instead). */
  private onStored(t: number, r: MetaReply): void {
    const slot = r.opaque
    if (slot < 0 || slot >= this.outcome.length) return
    const i = Math.floor(slot / this.opts.maxChain)
    const onCopied = this.opts.onCopied
    if (r.status === HD) {
      if (onCopied !== undefined) {
        const destCas = itemCas(r)
        if (destCas !== undefined) onCopied(this.batch!.key(i), t, this.cas.subarray(i * CAS_DIGITS, i * CAS_DIGITS + this.casLen[i]!), destCas)
      }
    } else if (r.status === NS) {
      this.outcome[slot] = IN_PLACE
      this.opts.tally.perDestination[t]!.inPlace++
      onCopied?.(this.batch!.key(i), t, this.cas.subarray(i * CAS_DIGITS, i * CAS_DIGITS + this.casLen[i]!), undefined)
    } else {
      this.outcome[slot] = FAILED
      this.opts.tally.perDestination[t]!.failed++
      this.opts.tally.sample(this.batch!.key(i), `${this.opts.targets[t]!.address}: ${r.line()}`)
    }
  }

  /** The batch to target t failed as a whole (connection lost): every key sent there failed, whatever it answered before. */
  private failTarget(t: number): void {
    const { maxChain } = this.opts
    const batch = this.batch!
    for (let i = 0; i < batch.count; i++) {
      if (this.read[i] !== QUEUED) continue
      for (let j = 0; j < this.destCount[i]!; j++) {
        const slot = i * maxChain + j
        if (this.dests[slot] === t && this.outcome[slot] === STORED) {
          this.outcome[slot] = LOST
          this.opts.tally.perDestination[t]!.failed++
        }
      }
    }
  }

  /**
   * The source copy changed (EX) or vanished (NF) after we read it: the copies we wrote could be
   * stale, or resurrect a deleted key. Withdraw them, but only our own: between our add and the
   * source delete the application may have written a newer value at the destination and deleted
   * or moved the source copy (hence the NF), and that write must survive. So each copy is read
   * back (a read: value, flags, CAS) and deleted by the CAS it has now (delete-if-CAS) only if it
   * still holds the value and flags we wrote; a write made even between the two is kept. The
   * next pass moves a newer source value.
   */
  private async invalidate(count: number): Promise<void> {
    const { opts } = this
    const batch = this.batch!
    const { maxChain, tally, targets } = opts
    const checks = (this.checkBatches ??= targets.map(() => new NodeBatch(4096)))
    const drops = (this.dropBatches ??= targets.map(() => new NodeBatch(4096)))
    this.targetUsed.fill(0)
    for (let i = 0; i < batch.count; i++) {
      if (this.read[i] !== CONFLICT) continue
      const n = this.destCount[i]!
      let storedHere = false
      for (let j = 0; j < n; j++) {
        const slot = i * maxChain + j
        if (this.outcome[slot] !== STORED) continue
        const t = this.dests[slot]!
        checks[t]!.read(slot, batch.keys, batch.keyStart[i]!, batch.keyEnd[i]!)
        this.targetUsed[t] = 1
        tally.perDestination[t]!.keys--
        tally.perDestination[t]!.bytes -= this.valueLen[i]!
        tally.bytes -= this.valueLen[i]!
        storedHere = true
      }
      if (storedHere) {
        tally.moved--
      } else {
        tally.inPlace--
      }
    }
    tally.conflicts += count
    const failure: (string | undefined)[] = targets.map(() => undefined)
    const used: number[] = []
    for (let t = 0; t < targets.length; t++) if (this.targetUsed[t] === 1) used.push(t)
    await this.sendEach(used, failure, checks, (t, r) => this.onCheck(t, r, drops[t]!))
    for (const t of used) if (failure[t] !== undefined) drops[t]!.reset()
    const toDrop = used.filter((t) => failure[t] === undefined && drops[t]!.count > 0)
    await this.sendEach(toDrop, failure, drops, (t, r) => this.onDropped(t, r))
    for (const t of used) {
      if (failure[t] === undefined) continue
      // A copy that may be stale could not be checked or deleted: count its keys as failed, so the job does not report success.
      for (let i = 0; i < batch.count; i++) {
        if (this.read[i] !== CONFLICT) continue
        for (let j = 0; j < this.destCount[i]!; j++) {
          const slot = i * maxChain + j
          if (this.dests[slot] !== t || this.outcome[slot] !== STORED) continue
          this.failWithdrawal(t, slot, failure[t]!)
        }
      }
    }
  }

  /** Sends one batch to each of `ts` in parallel; a batch that fails as a whole sets `failure[t]`. */
  private async sendEach(ts: readonly number[], failure: (string | undefined)[], batches: readonly NodeBatch[], onReply: (t: number, r: MetaReply) => void): Promise<void> {
    const { targets } = this.opts
    const results = await Promise.allSettled(ts.map((t) => batches[t]!.send(targets[t]!.conn, (r) => onReply(t, r))))
    for (let k = 0; k < ts.length; k++) {
      const r = results[k]!
      if (r.status === 'rejected') failure[ts[k]!] = (r.reason as Error).message
    }
  }

  /** A copy read back: queue its CAS-checked delete if it is still the one we wrote; anything else is a newer write, kept. */
  private onCheck(t: number, r: MetaReply, drop: NodeBatch): void {
    const slot = r.opaque
    if (slot < 0 || slot >= this.outcome.length || this.outcome[slot] !== STORED) return
    if (r.status !== VA) {
      if (r.status === ERR) this.failWithdrawal(t, slot, r.line())
      return
    }
    const batch = this.batch!
    const i = Math.floor(slot / this.opts.maxChain)
    const len = this.valueLen[i]!
    const end = this.valueEnd[slot]!
    const ours =
      r.valueEnd - r.valueStart === len &&
      itemFlags(r) === this.flagsOf[i] &&
      this.targetBatches[t]!.sent!.compare(r.buf, r.valueStart, r.valueEnd, end - len, end) === 0
    if (!ours) return
    const cas = itemCas(r)
    if (cas === undefined) {
      this.failWithdrawal(t, slot, `no CAS in ${r.line()}`)
      return
    }
    drop.deleteIfCas(slot, batch.keys, batch.keyStart[i]!, batch.keyEnd[i]!, cas)
  }

  /** CAS-checked deletes: EX (rewritten since the read-back) and NF (gone) both leave no copy of ours. */
  private onDropped(t: number, r: MetaReply): void {
    if (r.status === ERR && r.opaque >= 0 && r.opaque < this.outcome.length) this.failWithdrawal(t, r.opaque, r.line())
  }

  private failWithdrawal(t: number, slot: number, reason: string): void {
    const { tally, targets, maxChain } = this.opts
    this.outcome[slot] = FAILED
    tally.failedBy['destination-error']++
    tally.perDestination[t]!.failed++
    tally.sample(this.batch!.key(Math.floor(slot / maxChain)), `${targets[t]!.address}: could not delete a copy that changed at the source (${reason})`)
  }
}
