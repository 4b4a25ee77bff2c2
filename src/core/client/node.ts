import type { Socket } from 'node:net'
import { Client as MemjsClient, Server as MemjsServer } from 'memjs'
import { EN, EX, HD, MetaConnection, MetaPayload, NF, NS, VA, keyEncoding, statusName, type MetaReply } from '../protocol/index.js'
import { isServerError, ServerError, timedOut, unreachable } from '../protocol/errors.js'
import { isCommandError } from './errors.js'
import { expiryToken } from '../protocol/ttl.js'

/** An item as read for a move or a repair: everything needed to recreate it elsewhere. */
export interface ItemForMove {
  value: Buffer
  flags: number
  /** Remaining seconds, -1 = no expiry. */
  ttl: number
  /** CAS as decimal digits (it can exceed 2^53). */
  cas: string
}

export type CasDeleteResult = 'deleted' | 'changed' | 'gone'

export interface NodeOptions {
  timeout: number
  connectTimeout: number
  keepAlive: boolean
  logger: ((line: string) => void) | undefined
}

/** The memjs internals this module touches (memjs 1.3.2 lib/memjs/server.js); not in @types/memjs. */
interface MemjsServerInternals {
  _socket?: Socket | undefined
  sock(sasl: boolean, go: (socket: Socket) => void): void
  error(err: Error | string): void
}

type Callback<T> = (err: Error | null, result: T) => void

/** Transport failures: the server is unusable (down); anything else is about the one command. */
export function isTransportError(err: unknown): err is ServerError {
  return (
    isServerError(err) &&
    (err.code === 'SERVER_UNREACHABLE' || err.code === 'SERVER_TIMEOUT' || err.code === 'CONNECTION_CLOSED' || err.code === 'PROTOCOL_ERROR')
  )
}

/** The `T` flag that gives an item the remaining `ttl` seconds it had at its source (DESIGN, "the 30-day rule"). */
export function ttlToken(ttl: number, nowSeconds = Math.floor(Date.now() / 1000)): number {
  return expiryToken(ttl, 0, nowSeconds)
}

/**
 * One memcached server as the application library uses it: a memjs client for the data path
 * (one memjs Client per server, its failover and retries off, so the pool client decides where a
 * key goes and what a failure means), and, opened only when needed, a meta-protocol connection
 * for what memjs cannot do: read an item with its flags, TTL and CAS, add it with those, and
 * delete it only if its CAS is unchanged (moves and read repair).
 */
export class ServerNode {
  readonly address: string
  private memjs: MemjsClient | undefined
  private memjsServer: (MemjsServer & MemjsServerInternals) | undefined
  /** Every socket memjs opened: memjs forgets a socket after a timeout (it only end()s it), close() must not. */
  private readonly sockets = new Set<Socket>()
  private meta: Promise<MetaConnection> | undefined
  private closed = false
  private readonly payload = new MetaPayload(1024)

  constructor(
    address: string,
    private readonly host: string,
    private readonly port: number,
    private readonly opts: NodeOptions,
  ) {
    this.address = address
  }

  // ---- data path (memjs) ----

  // get and set run once per application request: the callback forms let PoolClient's lean
  // path make the request's one promise itself (its bookkeeping runs in the callback).
  getWith(key: Buffer, done: (err: Error | null, value: Buffer | undefined) => void): void {
    if (this.closed) return done(this.closedError(), undefined)
    const client = this.memjs ?? this.openMemjs()
    client.get(key as unknown as string, (err, value) => {
      if (err === null || err === undefined) done(null, value ?? undefined)
      else done(this.classify(err), undefined)
    })
  }

  setWith(key: Buffer, value: Buffer, expires: number, done: (err: Error | null) => void): void {
    if (this.closed) return done(this.closedError())
    const client = this.memjs ?? this.openMemjs()
    client.set(key as unknown as string, value, { expires }, (err) => done(err === null || err === undefined ? null : this.classify(err)))
  }

  get(key: Buffer): Promise<Buffer | undefined> {
    return new Promise((resolve, reject) => this.getWith(key, (err, value) => (err === null ? resolve(value) : reject(err))))
  }

  set(key: Buffer, value: Buffer, expires: number): Promise<void> {
    return new Promise((resolve, reject) => this.setWith(key, value, expires, (err) => (err === null ? resolve() : reject(err))))
  }

  /** True when stored, false when the key already existed. */
  async add(key: Buffer, value: Buffer, expires: number): Promise<boolean> {
    return (await this.call<boolean | null>((c, cb) => c.add(key as unknown as string, value, { expires }, cb))) === true
  }

  /** True when the key was there. */
  async delete(key: Buffer): Promise<boolean> {
    return (await this.call<boolean | null>((c, cb) => c.delete(key as unknown as string, cb))) === true
  }

  /** True when the key was there. */
  async touch(key: Buffer, expires: number): Promise<boolean> {
    return (await this.call<boolean | null>((c, cb) => c.touch(key as unknown as string, expires, cb))) === true
  }

  private closedError(): ServerError {
    return new ServerError('CONNECTION_CLOSED', this.address, `the connection to ${this.address} was closed by PoolClient.close().`)
  }

  private call<T>(run: (c: MemjsClient, cb: Callback<T>) => void): Promise<T> {
    if (this.closed) return Promise.reject(this.closedError())
    const client = this.memjs ?? this.openMemjs()
    return new Promise((resolve, reject) => {
      run(client, (err, result) => {
        if (err === null || err === undefined) resolve(result)
        else reject(this.classify(err))
      })
    })
  }

  private classify(err: Error | string): Error {
    const e = typeof err === 'string' ? new Error(err) : err
    if (isCommandError(e)) return e
    if (/timed out connecting/.test(e.message)) return timedOut(this.address, 'the TCP connection', this.opts.connectTimeout * 1000)
    if (/timed out/.test(e.message)) return timedOut(this.address, 'a request', this.opts.timeout * 1000)
    if (this.closed) return new ServerError('CONNECTION_CLOSED', this.address, `the connection to ${this.address} was closed by PoolClient.close().`, { cause: e })
    return unreachable(this.address, e)
  }

  private openMemjs(): MemjsClient {
    const log = this.opts.logger
    const logger = { log: (...args: unknown[]): void => log?.(args.filter((a) => typeof a === 'string').join(' ')) }
    // A fresh options object per server: memjs writes its defaults into the object it is given.
    const serverOptions = { timeout: this.opts.timeout, conntimeout: this.opts.connectTimeout, keepAlive: this.opts.keepAlive }
    // The Server constructor, not Client.create("host:port"): create splits on ":" and cannot take an IPv6 host.
    const server = new MemjsServer(this.host, this.port, undefined, undefined, serverOptions) as MemjsServer & MemjsServerInternals
    const originalSock = server.sock.bind(server)
    server.sock = (sasl, go) => {
      originalSock(sasl, go)
      const s = server._socket
      if (s !== undefined && !this.sockets.has(s)) {
        this.sockets.add(s)
        s.once('close', () => this.sockets.delete(s))
      }
    }
    this.memjsServer = server
    this.memjs = new MemjsClient([server], { failover: false, retries: 0, expires: 0, logger })
    return this.memjs
  }

  // ---- moves and repair (meta protocol) ----

  /** Whether the meta protocol can name this key (memjs' binary protocol can name any key up to 250 bytes). */
  static metaAddressable(key: Buffer): boolean {
    return keyEncoding(key) !== 'unaddressable'
  }

  /** `mg <key> v f t c`: the item with its flags, remaining TTL and CAS; undefined when absent. */
  async readForMove(key: Buffer): Promise<ItemForMove | undefined> {
    const p = this.payload
    p.command('mg', key).flags('v f t c').end().noop()
    let item: ItemForMove | undefined
    await this.batch(p.take(), (status, r) => {
      if (status === VA) {
        item = { value: Buffer.from(r.value!), flags: r.flagInt('f') || 0, ttl: r.flagInt('t'), cas: r.flagToken('c') ?? '0' }
        if (Number.isNaN(item.ttl)) item.ttl = -1
      } else if (status !== EN) {
        throw this.unexpected('mg', status, r.line())
      }
    })
    return item
  }

  /**
   * `ms <key> <len> F T ME c` (add): the CAS the new item got when stored (so that it can be
   * withdrawn only if nobody replaced it since; "" if the server did not say), undefined when
   * the key was already there.
   */
  async addItem(key: Buffer, item: ItemForMove): Promise<string | undefined> {
    const p = this.payload
    p.command('ms', key).size(item.value.length).flag('F', item.flags).flag('T', ttlToken(item.ttl)).flags('ME c').end(item.value).noop()
    let cas: string | undefined
    await this.batch(p.take(), (status, r) => {
      if (status === HD) cas = r.flagToken('c') ?? ''
      else if (status !== NS) throw this.unexpected('ms', status, r.line())
    })
    return cas
  }

  /** `md <key> C<cas>`: deleted, changed since read (EX), or gone (NF). */
  async deleteIfCas(key: Buffer, cas: string): Promise<CasDeleteResult> {
    const p = this.payload
    p.command('md', key).flagToken('C', cas).end().noop()
    let result: CasDeleteResult = 'gone'
    await this.batch(p.take(), (status, r) => {
      if (status === HD) result = 'deleted'
      else if (status === EX) result = 'changed'
      else if (status === NF) result = 'gone'
      else throw this.unexpected('md', status, r.line())
    })
    return result
  }

  private unexpected(verb: string, status: number, line: string): Error {
    return new Error(`memcached at ${this.address} answered ${statusName(status)} ${JSON.stringify(line)} to ${verb}`)
  }

  private async batch(payload: Buffer, onReply: (status: number, r: MetaReply) => void): Promise<void> {
    const conn = await this.metaConnection()
    await conn.batch(payload, (r) => onReply(r.status, r))
  }

  private metaConnection(): Promise<MetaConnection> {
    if (this.closed) return Promise.reject(new ServerError('CONNECTION_CLOSED', this.address, `the connection to ${this.address} was closed by PoolClient.close().`))
    if (this.meta !== undefined) return this.meta
    const pending = MetaConnection.connect(
      { host: this.host, port: this.port },
      { connectTimeoutMs: this.opts.connectTimeout * 1000, requestTimeoutMs: this.opts.timeout * 1000 },
    )
    this.meta = pending
    pending.then(
      (conn) => {
        conn.onClose(() => {
          if (this.meta === pending) this.meta = undefined
        })
        if (this.closed) void conn.close()
      },
      () => {
        if (this.meta === pending) this.meta = undefined
      },
    )
    return pending
  }

  /**
   * Closes everything at once: memjs' requests still pending fail (memjs calls their error
   * callbacks), every socket it ever opened is destroyed (memjs orphans one after a timeout, and
   * ending it would wait for a paused server's FIN), and the meta connection is closed.
   */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    const waits: Promise<unknown>[] = []
    if (this.memjsServer !== undefined) this.memjsServer.error(new Error('closed'))
    for (const s of this.sockets) {
      waits.push(new Promise((resolve) => (s.destroyed ? resolve(undefined) : s.once('close', resolve))))
      s.destroy()
    }
    if (this.meta !== undefined) waits.push(this.meta.then((c) => c.close(), () => undefined))
    await Promise.all(waits)
  }
}
