import { MetaConnection, MetaPayload, keyEncoding, VA, NS, EX, NF, HD, ERR, type MetaReply } from '../protocol/index.js'
import type { KeyBatch } from './key-batch.js'
import type { Tally } from './tally.js'

/** Where a key goes: fills `out` with destination ids (new chain members); returns how many. 0 = the key stays. */
export type RouteFn = (key: Buffer, out: Int32Array, offset: number) => number

export interface TransferTarget {
  readonly address: string
  readonly conn: MetaConnection
  /** `ok` to send; anything else and keys for it fail with that reason. */
  state(): 'ok' | 'full' | 'down'
  itemSizeMax(): number
  /** Server time minus local time, seconds. */
  clockOffset(): number
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
  /** Copy mode: called for every key stored at a destination, with the source CAS and the destination's new CAS. */
  onCopied?: ((key: Buffer, target: number, sourceCas: string, destCas: string) => void) | undefined
}

const THIRTY_DAYS = 2592000
// Per (key, destination) outcome.
const STORED = 0
const IN_PLACE = 1
const FAILED = 2

/**
 * Moves one batch of keys with pipelined meta commands: one write per phase and connection,
 * replies matched by opaque id, no per-key promise or object:
 *   1. source:        mg <key> v f t c u q O<i>     (u: do not bump the source's LRU; q: misses are silent)
 *   2. destinations:  ms <key> <len> F<f> T<ttl> ME q O<i>  (add: a newer value there is never overwritten)
 *   3. source (move): md <key> C<cas> q O<i>        (EX/NF: it changed since read → invalidate the copies)
 * A worker owns one BatchTransfer and reuses its scratch arrays for every batch.
 */
export class BatchTransfer {
  private readonly dests: Int32Array
  private readonly destCount: Uint8Array
  private readonly outcome: Uint8Array
  private readonly read: Uint8Array
  private readonly valueLen: Float64Array
  private readonly cas: (string | undefined)[]
  private readonly sourcePayload = new MetaPayload()
  private readonly targetPayloads: MetaPayload[]
  private readonly targetUsed: Uint8Array
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
    this.cas = new Array<string | undefined>(capacity)
    this.targetPayloads = opts.targets.map(() => new MetaPayload())
    this.targetUsed = new Uint8Array(opts.targets.length)
  }

  async run(batch: KeyBatch): Promise<void> {
    const { opts } = this
    const { tally, targets, maxChain } = opts
    this.batch = batch
    const src = this.sourcePayload
    let toRead = 0
    for (let i = 0; i < batch.count; i++) {
      this.read[i] = 0
      this.cas[i] = undefined
      const key = batch.key(i)
      const n = opts.route(key, this.dests, i * maxChain)
      this.destCount[i] = n
      if (n === 0) continue
      if (keyEncoding(key) === 'unaddressable') {
        tally.skipped.unaddressable++
        tally.sample(key, 'unaddressable key (over 250 bytes, or over 186 bytes needing base64)')
        this.destCount[i] = 0
        continue
      }
      let blocked = false
      for (let j = 0; j < n; j++) {
        const state = targets[this.dests[i * maxChain + j]!]!.state()
        if (state !== 'ok') {
          tally.failedBy[state === 'full' ? 'destination-full' : 'destination-down']++
          tally.perDestination[this.dests[i * maxChain + j]!]!.failed++
          blocked = true
          break
        }
      }
      if (blocked) {
        this.destCount[i] = 0
        continue
      }
      src.command('mg', key).flags('v f t c u q').flag('O', i).end()
      toRead++
    }
    if (toRead === 0) {
      src.reset()
      return
    }
    src.noop()
    this.targetUsed.fill(0)
    await opts.source.batch(src.take(), this.onRead)
    tally.processed += toRead

    // Phase 2: write to the destinations, all in parallel.
    const writes: Promise<void>[] = []
    for (let t = 0; t < targets.length; t++) {
      if (this.targetUsed[t] === 0) continue
      const p = this.targetPayloads[t]!.noop().take()
      writes.push(targets[t]!.conn.batch(p, (r) => this.onStored(t, r)))
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
      if (this.read[i] !== 1) continue
      const n = this.destCount[i]!
      let stored = 0
      let inPlace = 0
      let failed = 0
      for (let j = 0; j < n; j++) {
        const o = this.outcome[i * maxChain + j]
        if (o === STORED) {
          stored++
          const per = tally.perDestination[this.dests[i * maxChain + j]!]!
          per.keys++
          per.bytes += this.valueLen[i]!
        } else if (o === IN_PLACE) inPlace++
        else if (o === FAILED) failed++
      }
      if (failed > 0) {
        tally.failedBy['destination-error']++
        this.read[i] = 2
        continue
      }
      if (opts.mode === 'move') {
        src.command('md', batch.key(i)).flagToken('C', this.cas[i]!).flags('q').flag('O', i).end()
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
    src.noop()
    let conflicts = 0
    await opts.source.batch(src.take(), (r) => {
      if (r.status === EX || r.status === NF) {
        this.read[r.opaque] = 3
        conflicts++
      }
    })
    if (conflicts > 0) await this.invalidate(conflicts)
  }

  /** Phase 1 replies: queue the value for each destination (copied straight into its payload). */
  private readonly onRead = (r: MetaReply): void => {
    const i = r.opaque
    const batch = this.batch!
    const { opts } = this
    if (r.status !== VA || i < 0 || i >= batch.count) {
      if (r.status === ERR) {
        opts.tally.failedBy['source-error']++
        opts.tally.sample(i >= 0 && i < batch.count ? batch.key(i) : Buffer.alloc(0), r.line())
      }
      return
    }
    const value = r.value!
    const ttl = r.flagInt(0x74) // t: remaining seconds, -1 = never expires
    if (ttl !== -1 && ttl < Math.max(1, opts.minTtl)) {
      opts.tally.skipped.expiring++
      return
    }
    const flags = r.flagInt(0x66) // f
    const n = this.destCount[i]!
    const base = i * opts.maxChain
    for (let j = 0; j < n; j++) {
      if (value.length + 512 > opts.targets[this.dests[base + j]!]!.itemSizeMax()) {
        opts.tally.skipped['too-large']++
        opts.tally.sample(batch.key(i), `value of ${value.length} bytes exceeds item_size_max of ${opts.targets[this.dests[base + j]!]!.address}`)
        return
      }
    }
    this.cas[i] = r.flagToken(0x63) // c
    this.valueLen[i] = value.length
    this.read[i] = 1
    const key = batch.key(i)
    for (let j = 0; j < n; j++) {
      const t = this.dests[base + j]!
      const target = opts.targets[t]!
      const expiry = ttl === -1 ? 0 : ttl <= THIRTY_DAYS ? ttl : Math.floor(Date.now() / 1000) + target.clockOffset() + ttl
      const p = this.targetPayloads[t]!
      p.command('ms', key).size(value.length).flag('F', Number.isNaN(flags) ? 0 : flags).flag('T', expiry)
      p.flags(opts.store === 'add' ? 'ME' : 'MS')
      if (opts.onCopied !== undefined) p.flags('c')
      else p.flags('q')
      p.flag('O', base + j).end(value)
      this.outcome[base + j] = STORED
      this.targetUsed[t] = 1
    }
  }

  /** Phase 2 replies. With `q` a stored key answers nothing (copy mode asks for its CAS instead). */
  private onStored(t: number, r: MetaReply): void {
    const slot = r.opaque
    if (slot < 0 || slot >= this.outcome.length) return
    const i = Math.floor(slot / this.opts.maxChain)
    if (r.status === HD) {
      this.opts.onCopied?.(this.batch!.key(i), t, this.cas[i]!, r.flagToken(0x63) ?? '0')
    } else if (r.status === NS) {
      this.outcome[slot] = IN_PLACE
      this.opts.tally.perDestination[t]!.inPlace++
    } else {
      this.outcome[slot] = FAILED
      this.opts.tally.perDestination[t]!.failed++
      this.opts.tally.sample(this.batch!.key(i), `${this.opts.targets[t]!.address}: ${r.line()}`)
    }
  }

  /** With `q`, a stored key sends no reply: count those here (once the batch has answered). */
  private failTarget(t: number): void {
    const { maxChain } = this.opts
    const batch = this.batch!
    for (let i = 0; i < batch.count; i++) {
      if (this.read[i] !== 1) continue
      for (let j = 0; j < this.destCount[i]!; j++) {
        if (this.dests[i * maxChain + j] === t && this.outcome[i * maxChain + j] !== IN_PLACE) {
          this.outcome[i * maxChain + j] = FAILED
          this.opts.tally.perDestination[t]!.failed++
        }
      }
    }
  }

  /**
   * The source copy changed (EX) or vanished (NF) after we read it: the copies we wrote could be
   * stale, or resurrect a deleted key. Delete them; the next pass moves the newer value.
   */
  private async invalidate(count: number): Promise<void> {
    const { opts } = this
    const batch = this.batch!
    const { maxChain, tally, targets } = opts
    this.targetUsed.fill(0)
    for (let i = 0; i < batch.count; i++) {
      if (this.read[i] !== 3) continue
      const n = this.destCount[i]!
      let storedHere = false
      for (let j = 0; j < n; j++) {
        if (this.outcome[i * maxChain + j] !== STORED) continue
        const t = this.dests[i * maxChain + j]!
        this.targetPayloads[t]!.command('md', batch.key(i)).flags('q').flag('O', i).end()
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
    const deletes: Promise<void>[] = []
    for (let t = 0; t < targets.length; t++) {
      if (this.targetUsed[t] === 0) continue
      deletes.push(targets[t]!.conn.batch(this.targetPayloads[t]!.noop().take(), () => undefined))
    }
    await Promise.all(deletes)
  }
}
