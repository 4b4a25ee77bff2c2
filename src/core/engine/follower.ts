import type { Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseAddress, uriDecodeInto, type MetaConnection } from '../protocol/index.js'
import { openSocket } from '../protocol/transport.js'
import { MemdrainError, ExitCode } from '../errors.js'
import { connectChecked } from './engine.js'

/**
 * Change data capture on one memcached server: the keys it stores (and, from 1.6.20, deletes),
 * as memcached itself logs them to a `watch` connection.
 *
 *   watch mutations deletions   (1.6.20+)   or   watch mutations   (1.6.18 answers ERROR to deletions)
 *   → OK, then one line per event:
 *   ts=… gid=… type=item_store key=<uri> status=stored cmd=set ttl=… clsid=… cfd=… size=…
 *   ts=… gid=… type=deleted key=<uri> cmd=delete …                           (1.6.20+)
 *
 * What it does not see, measured on 1.6.18: incr/decr (changed in place), touch/gat (TTL only),
 * deletions before 1.6.20, expiry and evictions. Those are left to the CAS comparison of the
 * catch-up, as are events memcached drops: its log buffers are bounded, a slow watcher loses
 * lines (`log_watcher_skipped`, sometimes a `[skipped: N]` line) and a busy worker drops them
 * before any watcher sees them (`log_worker_dropped`). No `gid` gap tells either apart from
 * events nobody watches, so the follower polls those two counters and reports any rise as a
 * loss, as it does a dropped watch connection.
 *
 * Memory is bounded: pending keys are deduplicated (a key written 100 times while waiting is
 * refreshed once), and past `maxPending` distinct keys the follower drops them all and reports a
 * loss ("storm"): the caller degrades to a batched re-check of everything it copied, never to an
 * unbounded queue.
 */

export interface FollowerOptions {
  /** Distinct pending keys kept at most (default 100,000); past that the follower reports a storm. */
  maxPending?: number | undefined
  /** How often the server's dropped-event counters are polled, ms (default 250). */
  lossPollMs?: number | undefined
  /** Ask for deletions too when the server supports them (default true). */
  deletions?: boolean | undefined
}

export interface FollowerStats {
  /** Event lines parsed (stores and deletions). */
  events: number
  /** Keys handed out by take(). */
  taken: number
  /** Losses reported (skipped lines, dropped counters, reconnects, storms). */
  losses: number
  reconnects: number
}

const LF = 0x0a
const CR = 0x0d
const MAX_LINE = 8192
const KEY_TOKEN = Buffer.from(' key=')
const TYPE_STORE = Buffer.from(' type=item_store ')
const TYPE_DELETED = Buffer.from(' type=deleted ')
const STATUS_STORED = Buffer.from(' status=stored ')

export class SourceFollower {
  /** Whether this server streams its deletions (memcached 1.6.20+). */
  deletions = false
  readonly stats: FollowerStats = { events: 0, taken: 0, losses: 0, reconnects: 0 }
  private readonly pending = new Map<string, true>()
  private readonly maxPending: number
  private lossReason: string | undefined
  private wake: (() => void) | undefined
  private stopped = false
  private socket: Socket | undefined
  private buf = Buffer.alloc(0)
  private readonly keyScratch = Buffer.allocUnsafe(MAX_LINE)
  private lossPoll: NodeJS.Timeout | undefined
  private lastDropped: number | undefined
  private polling = false

  private constructor(
    readonly address: string,
    private readonly opts: FollowerOptions,
    private readonly statsConn: MetaConnection,
  ) {
    this.maxPending = opts.maxPending ?? 100_000
  }

  /** Opens the watch connection (and a stats connection for loss counters); resolves once memcached answered OK. */
  static async start(address: string, opts: FollowerOptions = {}): Promise<SourceFollower> {
    const statsConn = await connectChecked(address, 'source')
    const f = new SourceFollower(address, opts, statsConn)
    try {
      f.lastDropped = await f.droppedCount()
      await f.connect()
    } catch (err) {
      await f.stop()
      throw err
    }
    f.lossPoll = setInterval(() => void f.pollLoss(), opts.lossPollMs ?? 250)
    f.lossPoll.unref()
    return f
  }

  /** Distinct keys waiting to be taken. */
  get pendingCount(): number {
    return this.pending.size
  }

  /** Up to `max` pending keys (each once, oldest first), removed from the pending set. */
  take(max: number): Buffer[] {
    const out: Buffer[] = []
    for (const k of this.pending.keys()) {
      if (out.length >= max) break
      this.pending.delete(k)
      out.push(Buffer.from(k, 'latin1'))
    }
    this.stats.taken += out.length
    return out
  }

  /** Queues a key as if the server had reported it (a caller that must look at it again). */
  push(key: Uint8Array): void {
    if (this.pending.size >= this.maxPending) return this.lost(`more than ${this.maxPending} keys waited to be refreshed`)
    this.pending.set(Buffer.from(key).toString('latin1'), true)
    if (this.pending.size === 1) this.notify()
  }

  /** Why events may have been lost since the last call (undefined: none); resets. */
  takeLoss(): string | undefined {
    const r = this.lossReason
    this.lossReason = undefined
    return r
  }

  /** Resolves once keys are pending, a loss was reported, or the follower stopped (or `ms` passed). */
  async wait(ms = 1000): Promise<void> {
    if (this.pending.size > 0 || this.lossReason !== undefined || this.stopped) return
    await new Promise<void>((resolve) => {
      const t = setTimeout(done, ms)
      function done(): void {
        clearTimeout(t)
        resolve()
      }
      this.wake = done
    })
    this.wake = undefined
  }

  async stop(): Promise<void> {
    this.stopped = true
    if (this.lossPoll !== undefined) clearInterval(this.lossPoll)
    this.socket?.destroy()
    this.wake?.()
    await this.statsConn.close().catch(() => undefined)
  }

  private notify(): void {
    this.wake?.()
  }

  private lost(reason: string): void {
    this.stats.losses++
    this.lossReason ??= reason
    this.notify()
  }

  /** Opens the watch socket and waits for its OK (asking for deletions first, then mutations alone). */
  private async connect(): Promise<void> {
    const addr = parseAddress(this.address)
    const socket = await openSocket(addr, 3000)
    socket.setNoDelay(true)
    this.socket = socket
    this.buf = Buffer.alloc(0)
    const wantDeletions = this.opts.deletions !== false
    const reply = (line: string): Promise<string> =>
      new Promise((resolve, reject) => {
        let got = Buffer.alloc(0)
        const onData = (chunk: Buffer): void => {
          got = Buffer.concat([got, chunk])
          const lf = got.indexOf(LF)
          if (lf < 0) return
          socket.off('data', onData)
          socket.off('close', onClose)
          clearTimeout(timer)
          // Anything after the answer is already the event stream.
          this.buf = got.subarray(lf + 1)
          resolve(got.toString('latin1', 0, lf).trim())
        }
        const onClose = (): void => {
          clearTimeout(timer)
          reject(new MemdrainError(`${this.address} closed the connection on "${line}"`, { code: 'WATCH_FAILED', exitCode: ExitCode.precondition }))
        }
        const timer = setTimeout(() => {
          socket.off('data', onData)
          socket.destroy()
          reject(new MemdrainError(`${this.address} did not answer "${line}" in 3 s`, { code: 'WATCH_FAILED', exitCode: ExitCode.precondition }))
        }, 3000)
        socket.on('data', onData)
        socket.once('close', onClose)
        socket.write(`${line}\r\n`)
      })
    let answer = wantDeletions ? await reply('watch mutations deletions') : 'ERROR'
    this.deletions = answer === 'OK'
    // An ERROR leaves the connection in the normal command mode: ask again without deletions.
    if (answer !== 'OK') answer = await reply('watch mutations')
    if (answer !== 'OK') {
      socket.destroy()
      throw new MemdrainError(`${this.address} refused "watch mutations" (${answer}): it cannot stream its writes`, {
        code: 'WATCH_FAILED',
        exitCode: ExitCode.precondition,
        suggestions: ['memdrain needs memcached 1.6.10 or later with its logger (watch) enabled.'],
      })
    }
    socket.on('data', (chunk: Buffer) => this.onData(chunk))
    socket.once('close', () => {
      if (this.stopped || this.socket !== socket) return
      this.lost(`the watch connection to ${this.address} closed`)
      void this.reconnect()
    })
    socket.on('error', () => undefined)
    if (this.buf.length > 0) {
      const rest = this.buf
      this.buf = Buffer.alloc(0)
      this.onData(rest)
    }
  }

  private async reconnect(): Promise<void> {
    while (!this.stopped) {
      await sleep(500)
      if (this.stopped) return
      try {
        await this.connect()
        this.stats.reconnects++
        // Events between the loss and now are gone: one more loss covers them.
        this.lost(`the watch connection to ${this.address} was re-opened`)
        return
      } catch {
        // Keep trying while the caller keeps us.
      }
    }
  }

  private onData(chunk: Buffer): void {
    let data = this.buf.length > 0 ? Buffer.concat([this.buf, chunk]) : chunk
    let pos = 0
    for (;;) {
      const lf = data.indexOf(LF, pos)
      if (lf < 0) break
      const end = lf > pos && data[lf - 1] === CR ? lf - 1 : lf
      this.onLine(data, pos, end)
      pos = lf + 1
    }
    data = data.subarray(pos)
    if (data.length > MAX_LINE) {
      // Not an event stream any more: drop it and say events may be missing.
      this.lost(`an overlong line from ${this.address}'s watch connection`)
      data = Buffer.alloc(0)
    }
    this.buf = data.length > 0 ? Buffer.from(data) : Buffer.alloc(0)
  }

  private onLine(b: Buffer, start: number, end: number): void {
    const n = parseWatchLine(b, start, end, this.keyScratch)
    if (n === WATCH_SKIPPED) return this.lost(`${this.address} skipped watch events`)
    if (n <= 0) return
    this.stats.events++
    if (this.pending.size >= this.maxPending) {
      this.pending.clear()
      this.lost(`more than ${this.maxPending} keys changed at ${this.address} faster than they were refreshed`)
      return
    }
    const key = this.keyScratch.toString('latin1', 0, n)
    // Re-inserting moves nothing: the key keeps its place in line (it is refreshed with its latest value anyway).
    this.pending.set(key, true)
    if (this.pending.size === 1) this.notify()
  }

  private async droppedCount(): Promise<number> {
    const st = await this.statsConn.stats()
    return Number(st.get('log_worker_dropped') ?? 0) + Number(st.get('log_watcher_skipped') ?? 0)
  }

  private async pollLoss(): Promise<void> {
    if (this.polling || this.stopped) return
    this.polling = true
    try {
      const now = await this.droppedCount()
      if (this.lastDropped !== undefined && now > this.lastDropped) this.lost(`${this.address} dropped ${now - this.lastDropped} log event(s)`)
      this.lastDropped = now
    } catch {
      if (!this.stopped) this.lost(`${this.address}'s loss counters could not be read`)
    } finally {
      this.polling = false
    }
  }
}

/** parseWatchLine's answer for memcached's own loss marker (`skipped=N`, or `[skipped: N]`). */
export const WATCH_SKIPPED = -1

/**
 * One line of a `watch mutations deletions` stream, `b[start, end)` without its line end: the
 * length of the key it names, decoded into `keyOut`, when the line is an event that changed the
 * key (a store that stored, or a deletion); 0 for anything else (a store that did not store, other
 * event types, lines not understood); WATCH_SKIPPED for memcached's loss marker. Formats, from
 * memcached's logger.c:
 *   ts=%d.%d gid=%llu type=item_store key=%s status=%s cmd=%s ttl=%u clsid=%u cfd=%d size=%d
 *   ts=%d.%d gid=%llu type=deleted key=%s cmd=%s clsid=%u size=%d            (1.6.20+, cmd delete or md)
 *   skipped=%llu
 */
export function parseWatchLine(b: Buffer, start: number, end: number, keyOut: Buffer): number {
  if (end - start < 3) return 0
  if (b[start] !== 0x74 || b[start + 1] !== 0x73 || b[start + 2] !== 0x3d) {
    const s = b.indexOf('skipped', start, 'latin1')
    return s >= 0 && s < end ? WATCH_SKIPPED : 0
  }
  const line = b.subarray(start, end)
  const store = line.indexOf(TYPE_STORE) >= 0
  if (!store && line.indexOf(TYPE_DELETED) < 0) return 0
  // A store that did not store (add on an existing key, cas mismatch) changed nothing.
  if (store && line.indexOf(STATUS_STORED) < 0) return 0
  const k = line.indexOf(KEY_TOKEN)
  if (k < 0) return 0
  const ks = k + KEY_TOKEN.length
  let ke = line.indexOf(0x20, ks)
  if (ke < 0) ke = line.length
  return uriDecodeInto(line, ks, ke, keyOut)
}
