import { openSync, writeSync, readSync, closeSync, mkdtempSync, renameSync, rmSync } from 'node:fs'
import path from 'node:path'
import { MemdrainError, ExitCode } from '../errors.js'
import { defaultStateRoot, privateDir } from '../local/state-dir.js'
import type { FingerprintSet } from './fingerprint-set.js'
import type { KeyBatch } from './key-batch.js'

/**
 * The dump, spooled to disk as it arrives (memcached must be read promptly; the move is slow
 * and throttled), so memory stays flat however many keys a server holds. Records go into
 * recency buckets by last access, so `hot-first` moves the most recently used keys first.
 *
 * Record: u8 key length, u8 destination count, key bytes, u32 item size, f64 expiry (absolute,
 * -1 none), then the destinations (u16 each) the key was routed to when spooled (count 0: not
 * routed), so the move does not compute the placement a second time.
 */

/** Upper bounds of the buckets, as age since last access in seconds. */
export const RECENCY_BUCKETS_S = [10, 60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400, Number.POSITIVE_INFINITY]
export type SpoolOrder = 'hot-first' | 'dump'

const WRITE_BUFFER = 256 * 1024
const READ_BUFFER = 1024 * 1024
const RECORD_FIXED = 2 + 4 + 8
/** Most destinations a record can carry (u8 count). */
const MAX_RECORD_DESTS = 255

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
  private readonly counts: number[] = []
  count = 0
  /** Sum of item sizes spooled. */
  bytes = 0
  private finished = false

  private constructor(
    readonly dir: string,
    readonly order: SpoolOrder,
    private readonly serverNow: number,
  ) {
    const buckets = order === 'hot-first' ? RECENCY_BUCKETS_S.length : 1
    try {
      for (let b = 0; b < buckets; b++) {
        this.fds.push(openSync(this.bucketPath(b), 'w+', 0o600))
        this.bufs.push(Buffer.allocUnsafe(WRITE_BUFFER))
        this.fill.push(0)
        this.counts.push(0)
      }
    } catch (err) {
      this.close()
      throw spoolError(dir, err)
    }
  }

  private bucketPath(b: number): string {
    return path.join(this.dir, `bucket-${b}.spool`)
  }

  /** A fresh spool in a private directory under `root` (default: the user's state directory, see local/state-dir.ts). */
  static create(opts: { root?: string | undefined; order: SpoolOrder; serverNow: number; label: string }): KeySpool {
    const root = path.resolve(opts.root ?? defaultStateRoot())
    let dir: string
    try {
      privateDir(root)
      // mkdtemp: a fresh name made with O_EXCL semantics, 0700.
      dir = mkdtempSync(path.join(root, `${opts.label.replace(/[^A-Za-z0-9.-]/g, '_')}-`))
    } catch (err) {
      throw err instanceof MemdrainError ? err : spoolError(root, err)
    }
    return new KeySpool(dir, opts.order, opts.serverNow)
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
   */
  add(key: Uint8Array, size: number, exp: number, la: number, dests?: Int32Array, destCount = 0, destOffset = 0): void {
    const b = this.bucketOf(la)
    const nd = dests === undefined || destCount > MAX_RECORD_DESTS ? 0 : destCount
    const need = RECORD_FIXED + key.length + 2 * nd
    if (this.fill[b]! + need > WRITE_BUFFER) this.flushBucket(b)
    const buf = this.bufs[b]!
    let p = this.fill[b]!
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
    this.counts[b]!++
    this.count++
    this.bytes += size
  }

  private flushBucket(b: number): void {
    const n = this.fill[b]!
    if (n === 0) return
    try {
      let off = 0
      while (off < n) off += writeSync(this.fds[b]!, this.bufs[b]!, off, n - off)
    } catch (err) {
      throw spoolError(this.dir, err)
    }
    this.fill[b] = 0
  }

  /** Flushes what is buffered; the spool can then be read (any number of times). */
  finish(): void {
    for (let b = 0; b < this.fds.length; b++) this.flushBucket(b)
    this.finished = true
  }

  /**
   * Drops every record whose key an earlier record already had (for a dump that may list a key
   * twice), rewriting each bucket file in order; `onDropped` gets each dropped record's item size
   * and destinations. Memory: `seen` only. Returns the number of records dropped.
   */
  dedupe(seen: FingerprintSet, onDropped?: (size: number, dests: Int32Array, destCount: number) => void): number {
    this.finish()
    const dests = new Int32Array(MAX_RECORD_DESTS)
    let dropped = 0
    for (let b = 0; b < this.fds.length; b++) {
      const oldPath = `${this.bucketPath(b)}.dup`
      const oldFd = this.fds[b]!
      try {
        renameSync(this.bucketPath(b), oldPath)
        this.fds[b] = openSync(this.bucketPath(b), 'w+', 0o600)
      } catch (err) {
        throw spoolError(this.dir, err)
      }
      const reader = new SpoolReader([oldFd])
      for (let at = reader.nextRecord(); at >= 0; at = reader.nextRecord()) {
        const buf = reader.buffer
        const keyLen = buf[at]!
        const nd = buf[at + 1]!
        const len = RECORD_FIXED + keyLen + 2 * nd
        if (seen.add(buf, at + 2, at + 2 + keyLen)) {
          if (this.fill[b]! + len > WRITE_BUFFER) this.flushBucket(b)
          buf.copy(this.bufs[b]!, this.fill[b]!, at, at + len)
          this.fill[b]! += len
          continue
        }
        dropped++
        const size = buf.readUInt32LE(at + 2 + keyLen)
        this.counts[b]!--
        this.count--
        this.bytes -= size
        if (onDropped !== undefined) {
          for (let j = 0, p = at + 2 + keyLen + 12; j < nd; j++, p += 2) dests[j] = buf[p]! | (buf[p + 1]! << 8)
          onDropped(size, dests, nd)
        }
      }
      this.flushBucket(b)
      closeSync(oldFd)
      rmSync(oldPath, { force: true })
    }
    return dropped
  }

  reader(): SpoolReader {
    if (!this.finished) this.finish()
    return new SpoolReader(this.fds)
  }

  close(): void {
    for (const fd of this.fds.splice(0)) closeSync(fd)
  }

  /** Closes and deletes the spool directory. */
  remove(): void {
    this.close()
    rmSync(this.dir, { recursive: true, force: true })
  }
}

/** Reads records back, hottest bucket first, filling reusable KeyBatches. */
export class SpoolReader {
  private bucket = 0
  private filePos = 0
  private buf = Buffer.allocUnsafe(READ_BUFFER)
  private start = 0
  private end = 0

  constructor(private readonly fds: readonly number[]) {}

  /** The read buffer: the record `nextRecord` returned starts at that offset, valid until the next call. */
  get buffer(): Buffer {
    return this.buf
  }

  /** Offset in `buffer` of the next whole record, or -1 at the end. */
  nextRecord(): number {
    if (!this.ensureRecord()) return -1
    const at = this.start
    this.start += RECORD_FIXED + this.buf[at]! + 2 * this.buf[at + 1]!
    return at
  }

  /** Fills `batch` (cleared first) with up to its capacity; returns the count (0 at the end). */
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

  /** Makes sure a whole record is buffered; moves to the next bucket at EOF. */
  private ensureRecord(): boolean {
    for (;;) {
      if (this.end - this.start >= 2) {
        const need = RECORD_FIXED + this.buf[this.start]! + 2 * this.buf[this.start + 1]!
        if (this.end - this.start >= need) return true
      }
      if (this.bucket >= this.fds.length) return false
      // Compact and refill.
      this.buf.copy(this.buf, 0, this.start, this.end)
      this.end -= this.start
      this.start = 0
      const n = readSync(this.fds[this.bucket]!, this.buf, this.end, this.buf.length - this.end, this.filePos)
      if (n === 0) {
        if (this.end !== 0) throw new MemdrainError('the key spool is truncated', { code: 'SPOOL_CORRUPT', exitCode: ExitCode.failed })
        this.bucket++
        this.filePos = 0
        continue
      }
      this.filePos += n
      this.end += n
    }
  }
}
