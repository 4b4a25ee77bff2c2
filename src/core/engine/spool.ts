import { openSync, writeSync, readSync, closeSync, mkdtempSync, rmSync } from 'node:fs'
import path from 'node:path'
import { MemdrainError, ExitCode } from '../errors.js'
import { defaultStateRoot, privateDir } from '../local/state-dir.js'
import { FingerprintSet } from './fingerprint-set.js'
import type { KeyBatch } from './key-batch.js'

/**
 * The dump, spooled to disk as it arrives (memcached must be read promptly; a throttled move is
 * slower than the dump), so memory stays flat however many keys a server holds. It is a buffer,
 * not a barrier: readers take records as soon as they are flushed, while the dump goes on.
 * Records go into recency buckets by last access; a reader always takes from the hottest bucket
 * that has records, so `hot-first` moves the most recently used keys first whenever a backlog
 * builds up (a throttled move), and nothing waits for order when the move keeps up.
 *
 * Record: u8 key length, u8 destination count, key bytes, u32 item size, f64 expiry (absolute,
 * -1 none), then the destinations (u16 each) the key was routed to when spooled (count 0: not
 * routed), so the move does not compute the placement a second time.
 */

/** Upper bounds of the buckets, as age since last access in seconds. */
export const RECENCY_BUCKETS_S = [10, 60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400, Number.POSITIVE_INFINITY]
export type SpoolOrder = 'hot-first' | 'dump'

const WRITE_BUFFER = 256 * 1024
/**
 * While a reader waits for records, a bucket is flushed as soon as it holds this much (about a
 * batch of short keys), instead of when its write buffer is full: the move starts at once.
 */
const EARLY_FLUSH = 16 * 1024
const READ_BUFFER = 1024 * 1024
const RECORD_FIXED = 2 + 4 + 8
/** Records a deduplicating spool holds before checking them against its set in one batch (see settle). */
const DEDUPE_BATCH = 256
/** Most destinations a record can carry (u8 count). */
const MAX_RECORD_DESTS = 255
/** Bytes of a record with a 250-byte key and a few destinations: what a spool needs per key at most, in practice. */
export const SPOOL_RECORD_MAX = RECORD_FIXED + 250 + 2 * 8

function spoolError(dir: string, err: unknown): MemdrainError {
  const code = (err as NodeJS.ErrnoException).code
  return new MemdrainError(
    code === 'ENOSPC' || code === 'EDQUOT'
      ? `the spool directory ${dir} is full (${code})`
      : `cannot write the key spool in ${dir}: ${(err as Error).message}`,
    {
      code: 'SPOOL_FAILED',
      exitCode: ExitCode.precondition,
      suggestions: ['Pass --spool-dir on a disk with room (about 270 bytes per key on the server), or free space there.'],
      cause: err,
    },
  )
}

export class KeySpool {
  private readonly fds: number[] = []
  private readonly bufs: Buffer[] = []
  private readonly fill: number[] = []
  /** Bytes of each bucket file written so far: whole records, readable. */
  readonly flushed: number[] = []
  count = 0
  /** Sum of item sizes spooled. */
  bytes = 0
  /** No record will be added any more (the dump ended, or failed). */
  finished = false
  /** Readers waiting for records (see EARLY_FLUSH). */
  private waiting = 0
  private wake: (() => void) | undefined
  private woken: Promise<void> | undefined
  /**
   * Deduplication in batches: records written but not yet checked against `seen` (fingerprint,
   * bucket, offset in the bucket's write buffer). A bucket is never flushed with any unchecked.
   */
  private readonly pendingFp = new Uint32Array(DEDUPE_BATCH * 2)
  private readonly pendingBucket = new Uint8Array(DEDUPE_BATCH)
  private readonly pendingAt = new Int32Array(DEDUPE_BATCH)
  private readonly fresh = new Uint8Array(DEDUPE_BATCH)
  private pending = 0

  private constructor(
    readonly dir: string,
    readonly order: SpoolOrder,
    private readonly serverNow: number,
    /** Keys spooled so far, when the dump may list a key twice; undefined = every key comes once. */
    private seen: FingerprintSet | undefined,
    /** Told of each record withdrawn as a repeat (its item size and destinations), to undo what was counted for it. */
    private readonly onDropped: ((size: number, dests: readonly number[]) => void) | undefined,
  ) {
    const buckets = order === 'hot-first' ? RECENCY_BUCKETS_S.length : 1
    try {
      for (let b = 0; b < buckets; b++) {
        this.fds.push(openSync(this.bucketPath(b), 'w+', 0o600))
        this.bufs.push(Buffer.allocUnsafe(WRITE_BUFFER))
        this.fill.push(0)
        this.flushed.push(0)
      }
    } catch (err) {
      this.close()
      throw spoolError(dir, err)
    }
  }

  private bucketPath(b: number): string {
    return path.join(this.dir, `bucket-${b}.spool`)
  }

  /**
   * A fresh spool in a private directory under `root` (default: the user's state directory, see local/state-dir.ts). With
   * `dedupe`, a key added again is dropped (a dump is a live walk: an LRU walk can list a key
   * twice), remembered as a fingerprint in that set (~11 bytes a key). Repeats are found in
   * batches (see add): `onDropped` hears of each one withdrawn.
   */
  static create(opts: {
    root?: string | undefined
    order: SpoolOrder
    serverNow: number
    label: string
    dedupe?: FingerprintSet | undefined
    onDropped?: ((size: number, dests: readonly number[]) => void) | undefined
  }): KeySpool {
    const root = path.resolve(opts.root ?? defaultStateRoot())
    let dir: string
    try {
      privateDir(root)
      // mkdtemp: a fresh name made with O_EXCL semantics, 0700.
      dir = mkdtempSync(path.join(root, `${opts.label.replace(/[^A-Za-z0-9.-]/g, '_')}-`))
    } catch (err) {
      throw err instanceof MemdrainError ? err : spoolError(root, err)
    }
    return new KeySpool(dir, opts.order, opts.serverNow, opts.dedupe, opts.onDropped)
  }

  /** Deduplicates from now on (before the first record: a walk that turned out able to repeat keys). */
  dedupeWith(seen: FingerprintSet): void {
    if (this.count > 0) throw new Error('KeySpool.dedupeWith after records were added')
    this.seen = seen
  }

  get buckets(): number {
    return this.fds.length
  }

  fd(b: number): number {
    return this.fds[b]!
  }

  private bucketOf(la: number): number {
    if (this.fds.length === 1) return 0
    const age = this.serverNow - la
    for (let b = 0; b < RECENCY_BUCKETS_S.length; b++) if (age <= RECENCY_BUCKETS_S[b]!) return b
    return RECENCY_BUCKETS_S.length - 1
  }

  /**
   * Spools one key, with the destinations route() gave it (`dests[destOffset .. destOffset +
   * destCount)`, destination ids below 65536), if any: the reader hands them back in the batch.
   * A deduplicating spool checks keys against its set in batches of DEDUPE_BATCH (see
   * FingerprintSet.addAll: one probe at a time costs a cache miss each) and before any flush: a
   * repeat is withdrawn then, `count` and `bytes` corrected and `onDropped` told, so the counts
   * are exact once the spool is finished (before, they may include repeats not yet checked).
   */
  add(key: Uint8Array, size: number, exp: number, la: number, dests?: Int32Array, destCount = 0, destOffset = 0): void {
    const b = this.bucketOf(la)
    const nd = dests === undefined || destCount > MAX_RECORD_DESTS ? 0 : destCount
    const need = RECORD_FIXED + key.length + 2 * nd
    if (this.fill[b]! + need > WRITE_BUFFER) this.flushBucket(b)
    const buf = this.bufs[b]!
    let p = this.fill[b]!
    if (this.seen !== undefined) {
      const j = this.pending++
      FingerprintSet.fingerprint(key, 0, key.length, this.pendingFp, 2 * j)
      this.pendingBucket[j] = b
      this.pendingAt[j] = p
    }
    buf[p++] = key.length
    buf[p++] = nd
    if (key.length <= 32) {
      for (let i = 0; i < key.length; i++) buf[p++] = key[i]!
    } else {
      buf.set(key, p)
      p += key.length
    }
    buf.writeUInt32LE(Math.min(size, 0xffffffff), p)
    p += 4
    buf.writeDoubleLE(exp, p)
    p += 8
    for (let j = 0; j < nd; j++) {
      const d = dests![destOffset + j]!
      buf[p++] = d & 0xff
      buf[p++] = (d >>> 8) & 0xff
    }
    this.fill[b] = p
    this.count++
    this.bytes += size
    if (this.pending === DEDUPE_BATCH) this.settle()
    if (this.waiting > 0 && this.fill[b]! >= EARLY_FLUSH) this.flushBucket(b)
  }

  /** Checks the pending records against the dedupe set and withdraws the repeats. */
  private settle(): void {
    const n = this.pending
    if (n === 0) return
    this.pending = 0
    this.seen!.addAll(this.pendingFp, n, this.fresh)
    // Last first: withdrawing a record moves only the records after it in its bucket, already seen to.
    for (let j = n - 1; j >= 0; j--) if (this.fresh[j] === 0) this.withdraw(this.pendingBucket[j]!, this.pendingAt[j]!)
  }

  private withdraw(b: number, at: number): void {
    const buf = this.bufs[b]!
    const keyLen = buf[at]!
    const nd = buf[at + 1]!
    const size = buf.readUInt32LE(at + 2 + keyLen)
    const dests: number[] = []
    for (let k = 0, q = at + 2 + keyLen + 12; k < nd; k++, q += 2) dests.push(buf[q]! | (buf[q + 1]! << 8))
    const len = RECORD_FIXED + keyLen + 2 * nd
    buf.copyWithin(at, at + len, this.fill[b]!)
    this.fill[b]! -= len
    this.count--
    this.bytes -= size
    this.onDropped?.(size, dests)
  }

  private flushBucket(b: number): void {
    this.settle()
    const n = this.fill[b]!
    if (n === 0) return
    try {
      let off = 0
      while (off < n) off += writeSync(this.fds[b]!, this.bufs[b]!, off, n - off, this.flushed[b]! + off)
    } catch (err) {
      throw spoolError(this.dir, err)
    }
    this.fill[b] = 0
    this.flushed[b]! += n
    this.notify()
  }

  private notify(): void {
    const wake = this.wake
    this.wake = undefined
    this.woken = undefined
    wake?.()
  }

  /** Resolves once more records are readable or the spool is finished. */
  async more(): Promise<void> {
    if (this.finished) return
    this.woken ??= new Promise<void>((resolve) => (this.wake = resolve))
    this.waiting++
    try {
      // Records already buffered go out now rather than when the buffer fills.
      for (let b = 0; b < this.fds.length; b++) if (this.fill[b]! > 0) this.flushBucket(b)
      await this.woken
    } finally {
      this.waiting--
    }
  }

  /** Flushes what is buffered; no record is added after this. Wakes waiting readers. */
  finish(): void {
    for (let b = 0; b < this.fds.length; b++) this.flushBucket(b)
    this.finished = true
    this.notify()
  }

  /** A reader of the records, hottest bucket first; it can read while records are still being added. */
  reader(): SpoolReader {
    return new SpoolReader(this)
  }

  close(): void {
    for (const fd of this.fds.splice(0)) closeSync(fd)
    this.finished = true
    this.notify()
  }

  /** Closes and deletes the spool directory. */
  remove(): void {
    this.close()
    rmSync(this.dir, { recursive: true, force: true })
  }
}

/** Reads records back, from the hottest bucket that has some, filling reusable KeyBatches. */
export class SpoolReader {
  /** The bucket whose bytes are in the read buffer. */
  private bucket = 0
  /** Bytes of each bucket file read so far. */
  private readonly readPos: number[]
  private buf = Buffer.allocUnsafe(READ_BUFFER)
  private start = 0
  private end = 0

  constructor(private readonly spool: KeySpool) {
    this.readPos = spool.flushed.map(() => 0)
  }

  /** The read buffer: the record `nextRecord` returned starts at that offset, valid until the next call. */
  get buffer(): Buffer {
    return this.buf
  }

  /** Offset in `buffer` of the next whole record readable now, or -1 if there is none. */
  nextRecord(): number {
    if (!this.ensureRecord()) return -1
    const at = this.start
    this.start += RECORD_FIXED + this.buf[at]! + 2 * this.buf[at + 1]!
    return at
  }

  /**
   * Fills `batch` (cleared first) with up to its capacity of the records readable now; returns
   * the count (0: none now — see `nextBatch` to wait for more).
   */
  next(batch: KeyBatch): number {
    batch.clear()
    while (!batch.full) {
      if (!this.ensureRecord()) break
      const b = this.buf
      const len = b[this.start]!
      const nd = b[this.start + 1]!
      const keyStart = this.start + 2
      const keyEnd = keyStart + len
      batch.push(b, keyStart, keyEnd, b.readUInt32LE(keyEnd), b.readDoubleLE(keyEnd + 4))
      let p = keyEnd + 12
      if (nd > 0 && nd <= batch.maxChain) {
        const i = batch.count - 1
        const base = i * batch.maxChain
        for (let j = 0; j < nd; j++, p += 2) batch.dests[base + j] = b[p]! | (b[p + 1]! << 8)
        batch.destCount[i] = nd
      }
      this.start = keyEnd + 12 + 2 * nd
    }
    return batch.count
  }

  /** `next`, waiting while the spool is still being written and has nothing readable; 0 = the end (or `stop()` said so). */
  async nextBatch(batch: KeyBatch, stop?: () => boolean): Promise<number> {
    for (;;) {
      // Checked before reading: once the spool is finished, one more read sees every record.
      const finished = this.spool.finished
      const n = this.next(batch)
      if (n > 0 || finished || stop?.() === true) return n
      await this.spool.more()
    }
  }

  /** Makes sure a whole record is buffered, reading more (hottest bucket first) if needed. */
  private ensureRecord(): boolean {
    const flushed = this.spool.flushed
    for (;;) {
      if (this.end - this.start >= 2) {
        const need = RECORD_FIXED + this.buf[this.start]! + 2 * this.buf[this.start + 1]!
        if (this.end - this.start >= need) return true
      }
      // The rest of a record cut by the read buffer's end is in the same bucket (flushes are
      // whole records); otherwise start on the hottest bucket that has unread records.
      if (this.end === this.start) {
        let b = 0
        while (b < flushed.length && this.readPos[b]! >= flushed[b]!) b++
        if (b === flushed.length) return false
        this.bucket = b
      }
      this.buf.copy(this.buf, 0, this.start, this.end)
      this.end -= this.start
      this.start = 0
      const b = this.bucket
      const want = Math.min(this.buf.length - this.end, flushed[b]! - this.readPos[b]!)
      const n = want > 0 ? readSync(this.spool.fd(b), this.buf, this.end, want, this.readPos[b]!) : 0
      if (n === 0) throw new MemdrainError('the key spool is truncated', { code: 'SPOOL_CORRUPT', exitCode: ExitCode.failed })
      this.readPos[b]! += n
      this.end += n
    }
  }
}
