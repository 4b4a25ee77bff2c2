import { closeSync, existsSync, fstatSync, fsyncSync, ftruncateSync, readFileSync, readSync, rmSync, writeSync } from 'node:fs'
import { createHash } from 'node:crypto'
import path from 'node:path'
import { MemdrainError, ExitCode } from '../errors.js'
import { defaultStateRoot, openPrivate, privateDir } from '../local/state-dir.js'
import { CopyIndex } from './copy-index.js'

/**
 * The copy hand-off's journal: one record per copy made before the switch, so that the catch-up
 * after it can tell which copies went stale. Appended through a buffer, read back in batches:
 * memory stays flat however many keys are copied (plus the CopyIndex: which record is the
 * latest per key and destination). It lives under the spool root, in a directory derived from
 * the pool and the server (not a fresh temporary one), so a job interrupted before its switch
 * resumes with the copies of the earlier run still known.
 *
 * Record: u8 key length, key bytes, u16 LE destination index (bit 15: an intent), u8 source-CAS
 * length, its digits, u8 destination-CAS length, its digits (length 0: unknown).
 *
 * Write-ahead: every copy is first journaled as an intent (key, destination, source CAS, the
 * destination CAS unknown) and the intents reach the file (write(2)) before the write is sent;
 * the destination's answer then appends the record with its CAS. So a process killed at any
 * moment, a write that timed out (a stalled memcached applies it later), or an answer lost with
 * its connection all leave a record saying "possibly copied": the catch-up compares such a copy
 * with the source and deletes it unless it is provably identical. A torn tail can only be an
 * intent whose write never went out (the write(2) of intents failed, e.g. ENOSPC, and the job
 * stopped) or an answer whose intent is whole: cutting it loses nothing.
 *
 * Binding: the directory holds the id of the job (stored in the pool record) and the destination
 * list the indexes refer to. A resumed job whose journal is missing (another --spool-dir, a
 * cleared disk, another host), belongs to another job, or was written for other destinations
 * gets a fresh journal with `lost` set: the caller must then treat every copy it may have made
 * as unknown (see adopt-copies.ts), never drop them silently.
 */

const WRITE_BUFFER = 64 * 1024
const READ_BUFFER = 256 * 1024
/** Largest record: 1 + 250 + 2 + 1 + 20 + 1 + 20. */
const MAX_RECORD = 295

function journalError(file: string, err: unknown): MemdrainError {
  if (err instanceof MemdrainError) return err
  const code = (err as NodeJS.ErrnoException).code
  return new MemdrainError(
    code === 'ENOSPC' || code === 'EDQUOT' ? `the copy journal's disk is full (${file}, ${code})` : `cannot use the copy journal ${file}: ${(err as Error).message}`,
    {
      code: 'SPOOL_FAILED',
      exitCode: ExitCode.precondition,
      suggestions: ['Pass --spool-dir on a disk with room (about 60 bytes per key copied), or free space there. Use the same --spool-dir when you run the drain again.'],
      cause: err,
    },
  )
}

/**
 * Where the journal of a copy hand-off of `server` from the pool at `poolLocation` lives, under
 * the spool root (default: the user's state directory, see local/state-dir.ts): the same place
 * for every run of that drain. The root and the journal's directory are checked private when the
 * journal is opened.
 */
export function copyJournalFile(spoolRoot: string | undefined, poolLocation: string, server: string): string {
  const root = path.resolve(spoolRoot ?? defaultStateRoot())
  const id = createHash('sha256').update(`${poolLocation}\0${server}`).digest('hex').slice(0, 16)
  return path.join(root, `drain-${server.replace(/[^A-Za-z0-9.-]/g, '_')}-${id}`, 'copy.journal')
}

/** Deletes a journal and its directory (a drain that finished, or a fresh start). */
export function removeCopyJournal(file: string): void {
  // Never a recursive delete in a directory another user can write (they could swap in a link mid-walk).
  try {
    privateDir(path.dirname(path.dirname(file)))
  } catch {
    return
  }
  rmSync(path.dirname(file), { recursive: true, force: true })
}

/** Writes a small file of the journal's directory, never through a link planted at its name. */
function writeNoFollow(file: string, text: string): void {
  const fd = openPrivate(file, 'truncate')
  try {
    writeSync(fd, text)
  } finally {
    closeSync(fd)
  }
}

function readNoFollow(file: string): string | undefined {
  if (!existsSync(file)) return undefined
  const fd = openPrivate(file, 'read')
  try {
    return readFileSync(fd, 'utf8')
  } finally {
    closeSync(fd)
  }
}

/** Bit 15 of the destination index: the record is an intent (written before the copy was sent). */
const INTENT = 0x8000

export interface JournalOpenOptions {
  /** The job's journal id (from the pool record); written into a new journal, checked on resume. */
  id?: string | undefined
  /** The job resumes: a journal should already be there. Without it, any journal there is replaced. */
  resume?: boolean | undefined
}

export class CopyJournal {
  /** Records in the file, including those of earlier runs. */
  count = 0
  /** The latest record per (key, destination), and the destination CAS of memdrain's copy. */
  readonly index = new CopyIndex()
  /**
   * Set when a resumed job's journal could not be used as it was (missing, another job's, other
   * destinations): it was started afresh and the copies an earlier run made are unknown.
   */
  lost: string | undefined
  private readonly buf = Buffer.allocUnsafe(WRITE_BUFFER)
  private fill = 0
  private fd: number | undefined
  /** A write failed: nothing more is written (the job stops before its switch). */
  private broken: MemdrainError | undefined

  private constructor(
    readonly file: string,
    fd: number,
  ) {
    this.fd = fd
  }

  /**
   * Opens (creating it if needed) the journal for appending. Calls `onRecord` with the key and
   * destination of every record already there whose copy is known to have landed (the key is a
   * view, valid during the call). `context` names what the destination indexes mean (the
   * destination list).
   */
  static open(file: string, context: string, onRecord?: (key: Buffer, target: number) => void, opts: JournalOpenOptions = {}): CopyJournal {
    let fd: number
    let lost: string | undefined
    try {
      const dir = path.dirname(file)
      // The root and the journal's own directory: private to this user (a journal is written by root's drains too).
      privateDir(path.dirname(dir))
      privateDir(dir)
      const contextFile = path.join(dir, 'context')
      const idFile = path.join(dir, 'id')
      const previous = readNoFollow(contextFile)
      const previousId = readNoFollow(idFile)?.trim()
      const present = existsSync(file) && previous !== undefined
      if (opts.resume === true) {
        if (!present) lost = `no copy journal at ${file} (another --spool-dir, a cleared disk, or another host)`
        else if (opts.id !== undefined && previousId !== opts.id) lost = `the copy journal at ${file} belongs to another job (${previousId ?? 'no id'}, this job is ${opts.id})`
      }
      if (lost === undefined && present && opts.resume !== false && previous !== context) {
        lost = `the copy journal at ${file} was written for other destinations (the pool's server list changed)`
      }
      if (opts.resume === false || lost !== undefined || !present) {
        rmSync(file, { force: true })
        writeNoFollow(contextFile, context)
        if (opts.id !== undefined) writeNoFollow(idFile, `${opts.id}\n`)
        else rmSync(idFile, { force: true })
      }
      fd = openPrivate(file, 'append')
    } catch (err) {
      throw journalError(file, err)
    }
    const journal = new CopyJournal(file, fd)
    journal.lost = lost
    try {
      const { records, validBytes, size } = scan(fd, journal.index, onRecord)
      if (validBytes < size) ftruncateSync(fd, validBytes)
      journal.count = records
    } catch (err) {
      journal.close()
      throw err instanceof MemdrainError ? err : journalError(file, err)
    }
    return journal
  }

  /**
   * Journals that `key` is about to be written at `target` (read from the source with
   * `sourceCas`): a possible copy. It reaches the file at the next flush(), which the transfer
   * calls before sending.
   */
  intent(key: Uint8Array, target: number, sourceCas: Uint8Array): void {
    this.append(key, target | INTENT, sourceCas, undefined)
  }

  /** Appends a record (`destCas` undefined: the destination already held the key). */
  append(key: Uint8Array, target: number, sourceCas: Uint8Array, destCas: Uint8Array | undefined): void {
    if (this.broken !== undefined) throw this.broken
    this.index.set(key, target & ~INTENT, this.count, destCas, sourceCas)
    const need = 5 + key.length + sourceCas.length + (destCas?.length ?? 0)
    if (this.fill + need > WRITE_BUFFER) this.flush()
    const b = this.buf
    let p = this.fill
    b[p++] = key.length
    b.set(key, p)
    p += key.length
    b.writeUInt16LE(target, p)
    p += 2
    b[p++] = sourceCas.length
    b.set(sourceCas, p)
    p += sourceCas.length
    if (destCas === undefined) {
      b[p++] = 0
    } else {
      b[p++] = destCas.length
      b.set(destCas, p)
      p += destCas.length
    }
    this.fill = p
    this.count++
  }

  /** Writes what is buffered to the file. */
  flush(): void {
    if (this.broken !== undefined) throw this.broken
    if (this.fill === 0 || this.fd === undefined) return
    try {
      let off = 0
      while (off < this.fill) off += writeSync(this.fd, this.buf, off, this.fill - off)
    } catch (err) {
      this.broken = journalError(this.file, err)
      throw this.broken
    }
    this.fill = 0
  }

  /** Flushes and fsyncs: before the switch, the journal must survive a crash of the machine too. */
  sync(): void {
    this.flush()
    if (this.fd === undefined) return
    try {
      fsyncSync(this.fd)
    } catch (err) {
      this.broken = journalError(this.file, err)
      throw this.broken
    }
  }

  /** Why the journal cannot be written any more (a write failed), if so. */
  get error(): MemdrainError | undefined {
    return this.broken
  }

  /** Reads every record from the start (flushes first). */
  /** Records `from` (default 0) up to `limit` (default: to the end). */
  reader(limit?: number, from?: number): JournalReader {
    this.flush()
    if (this.fd === undefined) throw new Error('the copy journal is closed')
    return new JournalReader(this.fd, limit, from)
  }

  /** Flushes and closes; the file stays for the next run. */
  close(): void {
    if (this.fd === undefined) return
    try {
      if (this.broken === undefined) this.flush()
    } catch {
      // Already recorded in `error`; the job reports it.
    } finally {
      closeSync(this.fd)
      this.fd = undefined
    }
  }
}

/** Walks the file: counts whole records, calls onRecord, returns where the last whole record ends. */
function scan(fd: number, index: CopyIndex, onRecord: ((key: Buffer, target: number) => void) | undefined): { records: number; validBytes: number; size: number } {
  const size = fstatSync(fd).size
  const reader = new JournalReader(fd)
  const batch = new JournalBatch(1024)
  let records = 0
  for (;;) {
    const n = reader.next(batch)
    if (n === 0) break
    records += n
    for (let i = 0; i < n; i++) {
      const key = batch.key(i)
      index.set(key, batch.target[i]!, batch.seq[i]!, batch.destCasKnown(i) ? batch.destCas(i) : undefined, batch.sourceCas(i))
      // An intent alone says "maybe": the rerun copies the key again (the add answers NS if it landed).
      if (onRecord !== undefined && !batch.intent[i]) onRecord(key, batch.target[i]!)
    }
  }
  return { records, validBytes: reader.position, size }
}

/** A batch of journal records, as offsets into one reused buffer. */
export class JournalBatch {
  count = 0
  readonly buf: Buffer
  readonly keyStart: Int32Array
  readonly keyEnd: Int32Array
  readonly target: Uint16Array
  /** Record number in the journal (0 = the first record ever appended). */
  readonly seq: Uint32Array
  /** 1: an intent (the copy was about to be sent; whether it landed is unknown). */
  readonly intent: Uint8Array
  readonly srcStart: Int32Array
  readonly srcEnd: Int32Array
  readonly dstStart: Int32Array
  readonly dstEnd: Int32Array
  private used = 0

  constructor(readonly capacity: number) {
    this.buf = Buffer.allocUnsafe(capacity * MAX_RECORD)
    this.keyStart = new Int32Array(capacity)
    this.keyEnd = new Int32Array(capacity)
    this.target = new Uint16Array(capacity)
    this.seq = new Uint32Array(capacity)
    this.intent = new Uint8Array(capacity)
    this.srcStart = new Int32Array(capacity)
    this.srcEnd = new Int32Array(capacity)
    this.dstStart = new Int32Array(capacity)
    this.dstEnd = new Int32Array(capacity)
  }

  clear(): void {
    this.count = 0
    this.used = 0
  }

  get full(): boolean {
    return this.count >= this.capacity
  }

  /** Copies one record (`src[start, end)`, already checked whole) in. */
  push(src: Buffer, start: number, end: number, seq: number): void {
    const i = this.count++
    const base = this.used
    src.copy(this.buf, base, start, end)
    this.used += end - start
    let p = base
    const keyLen = this.buf[p++]!
    this.keyStart[i] = p
    p += keyLen
    this.keyEnd[i] = p
    const t = this.buf.readUInt16LE(p)
    this.target[i] = t & ~INTENT
    this.intent[i] = (t & INTENT) !== 0 ? 1 : 0
    this.seq[i] = seq
    p += 2
    const srcLen = this.buf[p++]!
    this.srcStart[i] = p
    p += srcLen
    this.srcEnd[i] = p
    const dstLen = this.buf[p++]!
    this.dstStart[i] = p
    p += dstLen
    this.dstEnd[i] = p
  }

  key(i: number): Buffer {
    return this.buf.subarray(this.keyStart[i], this.keyEnd[i])
  }

  sourceCas(i: number): Buffer {
    return this.buf.subarray(this.srcStart[i], this.srcEnd[i])
  }

  /** Empty when the destination already held the key (unknown). */
  destCas(i: number): Buffer {
    return this.buf.subarray(this.dstStart[i], this.dstEnd[i])
  }

  destCasKnown(i: number): boolean {
    return this.dstEnd[i]! > this.dstStart[i]!
  }
}

/** Reads records in file order into JournalBatches; a torn last record is left out. */
export class JournalReader {
  /** File offset just after the last whole record returned. */
  position = 0
  /** Records returned so far. */
  records = 0
  private readonly buf = Buffer.allocUnsafe(READ_BUFFER)
  private start = 0
  private end = 0
  private filePos = 0
  private eof = false

  /** `limit`: read at most this many records (those present when a pass starts; what it appends is for the next). */
  constructor(
    private readonly fd: number,
    private readonly limit = Number.POSITIVE_INFINITY,
    private readonly from = 0,
  ) {}

  next(batch: JournalBatch): number {
    batch.clear()
    while (!batch.full && this.records < this.limit) {
      const len = this.wholeRecord()
      if (len === 0) break
      if (this.records < this.from) {
        // Before the range asked for: skipped (its record number still counts).
        this.records++
        this.start += len
        this.position += len
        continue
      }
      batch.push(this.buf, this.start, this.start + len, this.records++)
      this.start += len
      this.position += len
    }
    return batch.count
  }

  /** Length of the whole record at `start` (refilling as needed), 0 at the end of the file. */
  private wholeRecord(): number {
    for (;;) {
      const len = recordLength(this.buf, this.start, this.end)
      if (len > 0) return len
      if (this.eof) return 0
      this.buf.copy(this.buf, 0, this.start, this.end)
      this.end -= this.start
      this.start = 0
      const n = readSync(this.fd, this.buf, this.end, this.buf.length - this.end, this.filePos)
      if (n === 0) this.eof = true
      this.filePos += n
      this.end += n
    }
  }
}

/** Length of the record at `p` if it is whole (and sane) in `buf[p, end)`, else 0: a torn or garbled tail ends the journal. */
function recordLength(buf: Buffer, p: number, end: number): number {
  let q = p
  if (q >= end) return 0
  const keyLen = buf[q]!
  if (keyLen === 0 || keyLen > 250) return 0
  q += 1 + keyLen
  if (q + 2 >= end) return 0
  q += 2 // destination index
  const srcLen = buf[q]!
  if (srcLen === 0 || srcLen > 20) return 0
  q += 1 + srcLen
  if (q >= end) return 0
  const dstLen = buf[q]!
  if (dstLen > 20) return 0
  q += 1 + dstLen
  return q <= end ? q - p : 0
}
