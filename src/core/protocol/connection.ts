import type { Socket } from 'node:net'
import { formatAddress, type ServerAddress } from './address.js'
import { authRequired, openSocket, probeBinarySasl, saslOnly, SocketReader, transportSettings } from './transport.js'
import {
  closedLocally,
  connectionClosed,
  excerpt,
  isServerError,
  MIN_MEMCACHED_VERSION,
  notMemcached,
  protocolError,
  timedOut,
  versionTooOld,
  type ServerError,
} from './errors.js'

/** Two-letter meta status as a number: (first byte << 8) | second byte. */
function statusCode(s: string): number {
  return (s.charCodeAt(0) << 8) | s.charCodeAt(1)
}

export const VA = statusCode('VA') // value follows
export const HD = statusCode('HD') // success, no value
export const EN = statusCode('EN') // not found (mg)
export const NS = statusCode('NS') // not stored (ms: add on an existing key, ...)
export const EX = statusCode('EX') // CAS mismatch
export const NF = statusCode('NF') // not found (md, ms with C/I)
export const MN = statusCode('MN') // end of batch (reply to mn)
export const ME = statusCode('ME') // meta debug
/** `ERROR`, `CLIENT_ERROR ...`, `SERVER_ERROR ...` or any other line that is not a meta status: see `line()`. */
export const ERR = 1

const STATUS_NAMES = new Map<number, string>([VA, HD, EN, NS, EX, NF, MN, ME].map((c) => [c, String.fromCharCode(c >> 8, c & 0xff)]))

export function statusName(status: number): string {
  return status === ERR ? 'ERR' : (STATUS_NAMES.get(status) ?? `?${status}`)
}

const CR = 0x0d
const LF = 0x0a
const SP = 0x20
/** A reply line longer than this without "\n" is not memcached talking: stop before buffering garbage forever. */
const MAX_LINE = 16 * 1024
const INITIAL_RECEIVE_BUFFER = 64 * 1024

/**
 * One reply inside a batch. The connection owns ONE instance and refills it for every reply:
 * it (and `value`, a view into the receive buffer) is valid only during the `onReply` callback.
 * Copy what you keep (`Buffer.from(r.value)`, `r.flagToken('c')`).
 */
export class MetaReply {
  /** VA, HD, EN, NS, EX, NF, ME, or ERR for an error/unknown line. */
  status = 0
  /** The O flag's value as a number, -1 when absent or not a number. */
  opaque = -1
  /**
   * For VA: where the value lies in `buf` (valueStart = -1 for any other reply). The hot path
   * reads it from there; `value` makes a view.
   */
  valueStart = -1
  valueEnd = -1

  /** The receive buffer this reply was parsed from (valid during the callback only). */
  buf: Buffer = Buffer.alloc(0)
  /** @internal */ lineStart = 0
  /** @internal line end, before "\r\n" */ lineEnd = 0
  /** @internal */ flagsStart = 0

  /** For VA: the value bytes, a view into the receive buffer; undefined for other replies. */
  get value(): Buffer | undefined {
    return this.valueStart < 0 ? undefined : this.buf.subarray(this.valueStart, this.valueEnd)
  }

  /**
   * Copies a flag's value (e.g. the CAS `c`, as digits) into `out` at `offset`; returns its length,
   * or -1 when the flag is absent or its value is longer than `max` bytes. No allocation.
   */
  copyFlag(letter: number, out: Uint8Array, offset: number, max: number): number {
    const at = this.findFlag(letter)
    if (at < 0) return -1
    const end = this.tokenEnd(at)
    if (end - at > max) return -1
    const b = this.buf
    for (let i = at; i < end; i++) out[offset + i - at] = b[i]!
    return end - at
  }

  /**
   * A numeric flag (`f`, `t`, `s`, `l`, `h`...) parsed from the bytes; NaN when the flag is absent
   * or not an integer. `t` is -1 for an item without expiry, so absent is NaN, not -1.
   * Do not use it for the CAS (`c`): it can exceed 2^53, use flagToken.
   */
  flagInt(letter: string | number): number {
    const at = this.findFlag(typeof letter === 'number' ? letter : letter.charCodeAt(0))
    if (at < 0) return NaN
    const b = this.buf
    const end = this.lineEnd
    let i = at
    let negative = false
    if (i < end && b[i] === 0x2d) {
      negative = true
      i++
    }
    if (i >= end || b[i] === SP) return NaN
    let n = 0
    for (; i < end; i++) {
      const c = b[i]!
      if (c === SP) break
      const d = c - 0x30
      if (d < 0 || d > 9) return NaN
      n = n * 10 + d
    }
    return negative ? -n : n
  }

  /** A flag's value as text (latin1), e.g. the CAS `c` as decimal digits; undefined when absent. */
  flagToken(letter: string | number): string | undefined {
    const at = this.findFlag(typeof letter === 'number' ? letter : letter.charCodeAt(0))
    if (at < 0) return undefined
    return this.buf.toString('latin1', at, this.tokenEnd(at))
  }

  /** A flag's value as a view of the receive buffer (e.g. the key from `k`); same lifetime as `value`. */
  flagBytes(letter: string | number): Buffer | undefined {
    const at = this.findFlag(typeof letter === 'number' ? letter : letter.charCodeAt(0))
    if (at < 0) return undefined
    return this.buf.subarray(at, this.tokenEnd(at))
  }

  /** Whether a flag is present, with or without a value (e.g. `b` next to a base64 `k`, `W`, `X`, `Z`). */
  hasFlag(letter: string | number): boolean {
    return this.findFlag(typeof letter === 'number' ? letter : letter.charCodeAt(0)) >= 0
  }

  /** The whole reply line without "\r\n" (allocates: for errors and debugging). */
  line(): string {
    return this.buf.toString('latin1', this.lineStart, this.lineEnd)
  }

  /** Position just after the flag letter, or -1. */
  private findFlag(code: number): number {
    const b = this.buf
    const end = this.lineEnd
    let i = this.flagsStart
    while (i < end) {
      while (i < end && b[i] === SP) i++
      if (i >= end) break
      if (b[i] === code) return i + 1
      while (i < end && b[i] !== SP) i++
    }
    return -1
  }

  private tokenEnd(from: number): number {
    const b = this.buf
    let i = from
    while (i < this.lineEnd && b[i] !== SP) i++
    return i
  }
}

export interface MetaConnectionOptions {
  /** Time allowed for the TCP connection (ms). */
  connectTimeoutMs?: number
  /**
   * Time a request may wait for its reply (ms), counted from when it became the oldest pending
   * request or from the last bytes received, whichever is later. On expiry every pending request
   * fails with SERVER_TIMEOUT and the connection is destroyed.
   */
  requestTimeoutMs?: number
  /**
   * Read into one buffer, reused read after read (see SocketReader): no garbage per read. Only
   * for a connection whose every reply is used inside its callback (what MetaReply says: copy
   * what you keep), as the engine's batches do: a view kept past it would change under the
   * next read. Default false.
   */
  reuseReadBuffer?: boolean
}

export const META_CONNECTION_DEFAULTS = {
  connectTimeoutMs: 3000,
  requestTimeoutMs: 5000,
} as const satisfies Required<Omit<MetaConnectionOptions, 'reuseReadBuffer'>>

const enum Kind {
  Line,
  Stats,
  Batch,
}

interface Pending {
  kind: Kind
  what: string
  resolve(value: unknown): void
  reject(err: Error): void
  onReply?: (r: MetaReply) => void
  stats?: Map<string, string>
  /** First exception thrown by onReply: the batch is read to its MN, then rejected with it. */
  callbackError?: unknown
}

/**
 * A pipelined meta-protocol connection to one memcached server.
 *
 * Requests are written in order and replies read in order from one receive buffer, matched to a
 * FIFO of pending requests. `batch` is the hot path: one socket write per batch, one reused
 * MetaReply, replies parsed straight from the bytes, no per-reply string or promise.
 */
export class MetaConnection {
  readonly server: string
  private readonly requestTimeoutMs: number
  private readonly queue: (Pending | undefined)[] = []
  private qHead = 0
  private readonly reply = new MetaReply()

  private rbuf = Buffer.allocUnsafe(INITIAL_RECEIVE_BUFFER)
  private rstart = 0
  private rend = 0
  /** Bytes that must be buffered (from rstart) before the head reply can be parsed. */
  private need = 0

  private lastProgress = 0
  private timer: NodeJS.Timeout | undefined = undefined
  private failure: ServerError | undefined = undefined
  private lastErrorLine: string | undefined = undefined
  private isClosed = false
  private closing = false
  private readonly closeListeners: ((err: ServerError | undefined) => void)[] = []
  private closedPromise: Promise<void>

  private constructor(
    private readonly socket: Socket,
    /** The server this connection talks to (a node's dump opens connections of its own to it). */
    readonly address: ServerAddress,
    opts: MetaConnectionOptions,
    reader: SocketReader | undefined,
  ) {
    this.server = formatAddress(address)
    this.requestTimeoutMs = opts.requestTimeoutMs ?? META_CONNECTION_DEFAULTS.requestTimeoutMs
    socket.setNoDelay(true)
    socket.setKeepAlive(true, 30_000)
    if (reader !== undefined) reader.onData = (chunk) => this.onData(chunk)
    else socket.on('data', (chunk: Buffer) => this.onData(chunk))
    socket.on('error', (err) => {
      this.failure ??= connectionClosed(this.server, this.lastErrorLine, err)
    })
    this.closedPromise = new Promise((resolve) => {
      socket.once('close', () => {
        this.handleClose()
        resolve()
      })
    })
  }

  static async connect(addr: ServerAddress, opts: MetaConnectionOptions = {}): Promise<MetaConnection> {
    const reader = opts.reuseReadBuffer === true ? new SocketReader() : undefined
    const socket = await openSocket(addr, opts.connectTimeoutMs ?? META_CONNECTION_DEFAULTS.connectTimeoutMs, transportSettings(), reader)
    return new MetaConnection(socket, addr, opts, reader)
  }

  /** True once the socket is closed (by either side, a timeout or a protocol error). */
  get closed(): boolean {
    return this.isClosed
  }

  /** Number of requests written and not yet answered. */
  get pending(): number {
    return this.queue.length - this.qHead
  }

  /** Called once when the connection closes; `err` is why, undefined after close() with nothing pending. */
  onClose(listener: (err: ServerError | undefined) => void): void {
    if (this.isClosed) queueMicrotask(() => listener(this.failure))
    else this.closeListeners.push(listener)
  }

  /** The memcached version string, e.g. "1.6.18". NOT_MEMCACHED when the reply is not `VERSION ...`. */
  async version(): Promise<string> {
    const reply = await this.simple('version')
    if (!reply.startsWith('VERSION ')) throw notMemcached(this.server, `it answered ${excerpt(reply)} to "version"`)
    return reply.slice(8).trim()
  }

  /**
   * Probes `version` and refuses what memdrain cannot work with: VERSION_TOO_OLD below `min`,
   * NOT_MEMCACHED for any other answer, a closed connection, or no answer in time (a listener
   * that is not memcached often just waits). Returns the version.
   */
  async checkVersion(min: string = MIN_MEMCACHED_VERSION): Promise<string> {
    let reply: string
    try {
      reply = await this.simple('version')
    } catch (err) {
      // memcached -S ignores (or drops) text commands; it answers a binary SASL request.
      const silent = isServerError(err, 'SERVER_TIMEOUT') || (isServerError(err, 'CONNECTION_CLOSED') && this.lastErrorLine === undefined)
      if (silent && (await probeBinarySasl(this.address))) throw saslOnly(this.server)
      if (isServerError(err, 'SERVER_TIMEOUT')) {
        throw notMemcached(this.server, `no answer to "version" within ${this.requestTimeoutMs} ms (a hung or paused memcached looks the same)`)
      }
      if (isServerError(err, 'CONNECTION_CLOSED') || isServerError(err, 'PROTOCOL_ERROR')) {
        throw notMemcached(this.server, `${err.message.replace(/\.$/, '')} on "version"`)
      }
      throw err
    }
    if (reply === 'CLIENT_ERROR unauthenticated') throw authRequired(this.server)
    const m = /^VERSION (\d+)\.(\d+)\.(\d+)/.exec(reply)
    if (m === null) throw notMemcached(this.server, `it answered ${excerpt(reply)} to "version"`)
    const version = reply.slice(8).trim()
    if (compareVersions([Number(m[1]), Number(m[2]), Number(m[3])], min) < 0) throw versionTooOld(this.server, version)
    return version
  }

  /** `stats [group]` as a map of name to value (STAT lines until END). */
  stats(group?: 'settings' | 'slabs' | 'items' | 'conns' | 'sizes'): Promise<Map<string, string>> {
    const what = group === undefined ? 'stats' : `stats ${group}`
    return this.enqueue({ kind: Kind.Stats, what, stats: new Map() }, `${what}\r\n`) as Promise<Map<string, string>>
  }

  /** One command with a one-line reply, without "\r\n": `flush_all` → "OK", `mn` → "MN". */
  simple(line: string): Promise<string> {
    return this.enqueue({ kind: Kind.Line, what: JSON.stringify(line) }, `${line}\r\n`) as Promise<string>
  }

  /**
   * Sends a ready-built batch of meta commands that ENDS with "mn\r\n" in one write, calls
   * `onReply` for each reply before `MN` (errors included, as ERR), and resolves at `MN`.
   * Batches may overlap (pipelining); they are answered in order. If onReply throws, the batch is
   * still read to its MN (the stream stays in step), then rejects with that exception.
   */
  batch(payload: Uint8Array, onReply: (r: MetaReply) => void): Promise<void> {
    return this.enqueue({ kind: Kind.Batch, what: 'a batch', onReply }, payload) as Promise<void>
  }

  /** Closes the socket; pending requests fail with CONNECTION_CLOSED. Resolves once closed. */
  close(): Promise<void> {
    if (!this.isClosed) {
      this.closing = true
      if (this.pending > 0) this.failure ??= closedLocally(this.server, this.pending)
      // Nothing is lost by destroying: every write was answered, or its request fails anyway.
      // (end() would wait for the server's FIN, which a paused server never sends.)
      this.socket.destroy()
    }
    return this.closedPromise
  }

  private enqueue(p: Omit<Pending, 'resolve' | 'reject'>, data: Uint8Array | string): Promise<unknown> {
    return new Promise((resolve, reject) => {
      if (this.isClosed || this.socket.destroyed) {
        reject(this.failure ?? connectionClosed(this.server, this.lastErrorLine))
        return
      }
      const item = p as Pending
      item.resolve = resolve
      item.reject = reject
      if (this.pending === 0) this.lastProgress = Date.now()
      this.queue.push(item)
      this.armTimer()
      this.socket.write(data)
    })
  }

  private armTimer(): void {
    if (this.timer !== undefined) return
    this.timer = setTimeout(this.onTimer, this.requestTimeoutMs)
  }

  private readonly onTimer = (): void => {
    this.timer = undefined
    const head = this.queue[this.qHead]
    if (head === undefined || this.isClosed) return
    const idle = Date.now() - this.lastProgress
    if (idle < this.requestTimeoutMs) {
      this.timer = setTimeout(this.onTimer, this.requestTimeoutMs - idle)
      return
    }
    // Timers run before the loop reads its sockets: after a stall of this process (GC, a busy
    // CPU) the reply may already be waiting. Decide after this turn's reads (setImmediate runs
    // after the poll phase), so only a server that really sent nothing times out.
    const progress = this.lastProgress
    setImmediate(() => {
      const pending = this.queue[this.qHead]
      if (this.isClosed || pending === undefined || this.timer !== undefined) return
      if (this.lastProgress !== progress) this.armTimer()
      else this.fail(timedOut(this.server, pending.what, this.requestTimeoutMs))
    })
  }

  /** Fails the connection: every pending request rejects with `err` and the socket is destroyed. */
  private fail(err: ServerError): void {
    this.failure ??= err
    this.socket.destroy()
    // 'close' follows and rejects the queue; do it now too so callers do not wait for the event.
    this.rejectAll(this.failure)
  }

  private handleClose(): void {
    this.isClosed = true
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timer = undefined
    if (this.pending > 0 || !this.closing) this.failure ??= connectionClosed(this.server, this.lastErrorLine)
    if (this.failure !== undefined) this.rejectAll(this.failure)
    this.rbuf = Buffer.alloc(0)
    this.rstart = this.rend = 0
    for (const listener of this.closeListeners.splice(0)) listener(this.failure)
  }

  private rejectAll(err: Error): void {
    while (this.qHead < this.queue.length) {
      const p = this.queue[this.qHead]!
      this.queue[this.qHead++] = undefined
      p.reject(err)
    }
    this.queue.length = 0
    this.qHead = 0
  }

  private onData(chunk: Buffer): void {
    if (this.isClosed || this.failure !== undefined) return
    this.lastProgress = Date.now()
    if (this.rstart === this.rend) {
      // Nothing buffered: parse straight from the chunk, keep only the unparsed tail.
      const used = this.parse(chunk, 0, chunk.length)
      if (used < chunk.length && this.failure === undefined) this.keep(chunk, used)
      return
    }
    this.append(chunk)
    if (this.rend - this.rstart < this.need) return
    this.rstart = this.parse(this.rbuf, this.rstart, this.rend)
    if (this.rstart === this.rend) {
      this.rstart = this.rend = 0
      // A huge value grew the buffer: give the memory back once it is drained.
      if (this.rbuf.length > 4 * INITIAL_RECEIVE_BUFFER) this.rbuf = Buffer.allocUnsafe(INITIAL_RECEIVE_BUFFER)
    }
  }

  private keep(chunk: Buffer, from: number): void {
    const len = chunk.length - from
    if (this.rbuf.length < Math.max(len, this.need)) this.rbuf = Buffer.allocUnsafe(Math.max(len, this.need, INITIAL_RECEIVE_BUFFER))
    chunk.copy(this.rbuf, 0, from)
    this.rstart = 0
    this.rend = len
  }

  private append(chunk: Buffer): void {
    const len = this.rend - this.rstart
    if (this.rend + chunk.length > this.rbuf.length) {
      const want = Math.max(len + chunk.length, this.need)
      if (want <= this.rbuf.length) {
        this.rbuf.copy(this.rbuf, 0, this.rstart, this.rend)
      } else {
        const next = Buffer.allocUnsafe(Math.max(want, this.rbuf.length * 2))
        this.rbuf.copy(next, 0, this.rstart, this.rend)
        this.rbuf = next
      }
      this.rstart = 0
      this.rend = len
    }
    chunk.copy(this.rbuf, this.rend)
    this.rend += chunk.length
  }

  /** Parses complete replies in buf[pos, end); returns the position of the first unparsed byte. */
  private parse(buf: Buffer, pos: number, end: number): number {
    this.need = 0
    while (pos < end) {
      const head = this.queue[this.qHead]
      if (head === undefined) {
        this.fail(protocolError(this.server, `data with no request pending: ${excerpt(buf.toString('latin1', pos, Math.min(end, pos + 80)))}`))
        return end
      }
      const next = head.kind === Kind.Batch ? this.parseBatchReply(head, buf, pos, end) : this.parseOther(head, buf, pos, end)
      if (next < 0) break
      pos = next
      if (this.failure !== undefined) return end
    }
    return pos
  }

  private finishHead(value: unknown): void {
    const head = this.queue[this.qHead]!
    this.queue[this.qHead++] = undefined
    if (this.qHead === this.queue.length) {
      this.queue.length = 0
      this.qHead = 0
    } else if (this.qHead >= 1024) {
      this.queue.splice(0, this.qHead)
      this.qHead = 0
    }
    this.lastProgress = Date.now()
    if (this.pending === 0 && this.timer !== undefined) {
      clearTimeout(this.timer)
      this.timer = undefined
    }
    if (head.callbackError !== undefined) head.reject(head.callbackError as Error)
    else head.resolve(value)
  }

  /** Returns the index of "\n" in buf[pos, end), -1 if incomplete; fails the connection on an overlong line. */
  private findLine(buf: Buffer, pos: number, end: number): number {
    for (let i = pos; i < end; i++) if (buf[i] === LF) return i
    if (end - pos > MAX_LINE) {
      this.fail(protocolError(this.server, `a reply line longer than ${MAX_LINE} bytes: ${excerpt(buf.toString('latin1', pos, pos + 80))}`))
    }
    return -1
  }

  private parseBatchReply(head: Pending, buf: Buffer, pos: number, end: number): number {
    const lf = this.findLine(buf, pos, end)
    if (lf < 0) return -1
    const lineEnd = lf > pos && buf[lf - 1] === CR ? lf - 1 : lf
    const r = this.reply
    let next = lf + 1
    const c2 = lineEnd - pos > 2 ? buf[pos + 2] : SP
    if (lineEnd - pos >= 2 && c2 === SP) {
      r.status = (buf[pos]! << 8) | buf[pos + 1]!
      r.flagsStart = pos + 2
      if (r.status === MN) {
        this.finishHead(undefined)
        return next
      }
      r.valueStart = -1
      if (r.status === VA) {
        // "VA <size> <flags>*\r\n<data>\r\n"
        let i = pos + 3
        let size = 0
        let digits = 0
        for (; i < lineEnd; i++) {
          const d = buf[i]! - 0x30
          if (d < 0 || d > 9) break
          size = size * 10 + d
          digits++
        }
        if (digits === 0) {
          this.fail(protocolError(this.server, `bad VA line ${excerpt(buf.toString('latin1', pos, lineEnd))}`))
          return -1
        }
        if (next + size + 2 > end) {
          this.need = next + size + 2 - pos
          return -1
        }
        if (buf[next + size] !== CR || buf[next + size + 1] !== LF) {
          this.fail(protocolError(this.server, `a value not followed by "\\r\\n" after ${excerpt(buf.toString('latin1', pos, lineEnd))}`))
          return -1
        }
        r.flagsStart = i
        r.valueStart = next
        r.valueEnd = next + size
        next += size + 2
      }
    } else {
      r.status = ERR
      r.valueStart = -1
      r.flagsStart = lineEnd
      this.lastErrorLine = buf.toString('latin1', pos, lineEnd)
    }
    r.buf = buf
    r.lineStart = pos
    r.lineEnd = lineEnd
    r.opaque = r.status === ERR ? -1 : r.flagInt(0x4f)
    if (Number.isNaN(r.opaque)) r.opaque = -1
    if (head.callbackError === undefined) {
      try {
        head.onReply!(r)
      } catch (err) {
        head.callbackError = err
      }
    }
    r.valueStart = -1
    return next
  }

  private parseOther(head: Pending, buf: Buffer, pos: number, end: number): number {
    const lf = this.findLine(buf, pos, end)
    if (lf < 0) return -1
    const lineEnd = lf > pos && buf[lf - 1] === CR ? lf - 1 : lf
    const line = buf.toString('latin1', pos, lineEnd)
    if (head.kind === Kind.Line) {
      if (isErrorLine(line)) this.lastErrorLine = line
      this.finishHead(line)
      return lf + 1
    }
    // Stats: "STAT <name> <value>" lines until "END".
    if (line === 'END') {
      this.finishHead(head.stats)
    } else if (line.startsWith('STAT ')) {
      const sp = line.indexOf(' ', 5)
      if (sp < 0) head.stats!.set(line.slice(5), '')
      else head.stats!.set(line.slice(5, sp), line.slice(sp + 1))
    } else {
      // An error (e.g. an unknown stats group) ends the request; the connection stays usable.
      if (isErrorLine(line)) this.lastErrorLine = line
      head.callbackError = protocolError(this.server, `${excerpt(line)} in reply to ${head.what}`)
      this.finishHead(undefined)
    }
    return lf + 1
  }
}

function isErrorLine(line: string): boolean {
  return line.startsWith('ERROR') || line.startsWith('CLIENT_ERROR') || line.startsWith('SERVER_ERROR')
}

/** Compares [major, minor, patch] with "x.y.z". */
export function compareVersions(v: readonly [number, number, number], min: string): number {
  const m = min.split('.').map(Number)
  for (let i = 0; i < 3; i++) {
    const d = v[i]! - (m[i] ?? 0)
    if (d !== 0) return d
  }
  return 0
}
