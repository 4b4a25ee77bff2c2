import { closeSync, existsSync, fstatSync, ftruncateSync, mkdirSync, openSync, readFileSync, readSync, rmSync, writeFileSync, writeSync } from 'node:fs'
import { createHash } from 'node:crypto'
import path from 'node:path'
import { tmpdir } from 'node:os'
import { MemdrainError, ExitCode } from '../errors.js'

/**
 * The copy hand-off's journal: one record per copy made before the switch, so that the catch-up
 * after it can tell which copies went stale. Appended through a buffer, read back in batches:
 * memory stays flat however many keys are copied. It lives in a directory derived from the pool
 * and the server (not a fresh temporary one), so a drain interrupted before its switch resumes
 * with the copies of the earlier run still known.
 *
 * Record: u8 key length, key bytes, u16 LE destination index, u8 source-CAS length, its digits,
 * u8 destination-CAS length, its digits (length 0: the destination already held the key, the
 * add was not stored, so what it holds is unknown).
 *
 * A crash can lose the buffered tail (those copies then look unknown on the rerun: the add finds
 * them and the catch-up invalidates them) or tear the last record (cut off at open).
 */

const WRITE_BUFFER = 64 * 1024
const READ_BUFFER = 256 * 1024
/** Largest record: 1 + 250 + 2 + 1 + 20 + 1 + 20. */
const MAX_RECORD = 295

function journalError(file: string, err: unknown): MemdrainError {
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
 * the spool root (default: the system temp dir): the same place for every run of that drain.
 */
export function copyJournalFile(spoolRoot: string | undefined, poolLocation: string, server: string): string {
  const root = spoolRoot ?? path.join(tmpdir(), 'memdrain')
  const id = createHash('sha256').update(`${poolLocation}\0${server}`).digest('hex').slice(0, 16)
  return path.join(root, `drain-${server.replace(/[^A-Za-z0-9.-]/g, '_')}-${id}`, 'copy.journal')
}

/** Deletes a journal and its directory (a drain that finished, or a fresh start). */
export function removeCopyJournal(file: string): void {
  rmSync(path.dirname(file), { recursive: true, force: true })
}

export class CopyJournal {
  /** Records in the file, including those of earlier runs. */
  count = 0
  private readonly buf = Buffer.allocUnsafe(WRITE_BUFFER)
  private fill = 0
  private fd: number | undefined

  private constructor(
    readonly file: string,
    fd: number,
  ) {
    this.fd = fd
  }

  /**
   * Opens (creating it if needed) the journal for appending. Calls `onRecord` with the key and
   * destination of every record already there (the key is a view, valid during the call).
   * `context` names what the destination indexes mean (the destination list): a journal written
   * for another one is discarded, its indexes would point at the wrong servers.
   */
  static open(file: string, context: string, onRecord?: (key: Buffer, target: number) => void): CopyJournal {
    let fd: number
    try {
      mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 })
      const contextFile = path.join(path.dirname(file), 'context')
      const previous = existsSync(contextFile) ? readFileSync(contextFile, 'utf8') : undefined
      if (previous !== context) {
        rmSync(file, { force: true })
        writeFileSync(contextFile, context, { mode: 0o600 })
      }
      fd = openSync(file, 'a+', 0o600)
    } catch (err) {
      throw journalError(file, err)
    }
    const journal = new CopyJournal(file, fd)
    try {
      const { records, validBytes, size } = scan(fd, onRecord)
      if (validBytes < size) ftruncateSync(fd, validBytes)
      journal.count = records
    } catch (err) {
      journal.close()
      throw err instanceof MemdrainError ? err : journalError(file, err)
    }
    return journal
  }

  /** Appends a record (`destCas` undefined: the destination already held the key). */
  append(key: Uint8Array, target: number, sourceCas: Uint8Array, destCas: Uint8Array | undefined): void {
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
    if (this.fill === 0 || this.fd === undefined) return
    try {
      let off = 0
      while (off < this.fill) off += writeSync(this.fd, this.buf, off, this.fill - off)
    } catch (err) {
      throw journalError(this.file, err)
    }
    this.fill = 0
  }

  /** Reads every record from the start (flushes first). */
  reader(): JournalReader {
    this.flush()
    if (this.fd === undefined) throw new Error('the copy journal is closed')
    return new JournalReader(this.fd)
  }

  /** Flushes and closes; the file stays for the next run. */
  close(): void {
    if (this.fd === undefined) return
    try {
      this.flush()
    } finally {
      closeSync(this.fd)
      this.fd = undefined
    }
  }
}

/** Walks the file: counts whole records, calls onRecord, returns where the last whole record ends. */
function scan(fd: number, onRecord: ((key: Buffer, target: number) => void) | undefined): { records: number; validBytes: number; size: number } {
  const size = fstatSync(fd).size
  const reader = new JournalReader(fd)
  const batch = new JournalBatch(1024)
  let records = 0
  for (;;) {
    const n = reader.next(batch)
    if (n === 0) break
    records += n
    if (onRecord !== undefined) for (let i = 0; i < n; i++) onRecord(batch.key(i), batch.target[i]!)
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
  push(src: Buffer, start: number, end: number): void {
    const i = this.count++
    const base = this.used
    src.copy(this.buf, base, start, end)
    this.used += end - start
    let p = base
    const keyLen = this.buf[p++]!
    this.keyStart[i] = p
    p += keyLen
    this.keyEnd[i] = p
    this.target[i] = this.buf.readUInt16LE(p)
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
  private readonly buf = Buffer.allocUnsafe(READ_BUFFER)
  private start = 0
  private end = 0
  private filePos = 0
  private eof = false

  constructor(private readonly fd: number) {}

  next(batch: JournalBatch): number {
    batch.clear()
    while (!batch.full) {
      const len = this.wholeRecord()
      if (len === 0) break
      batch.push(this.buf, this.start, this.start + len)
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
