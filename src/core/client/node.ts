import type { Socket } from 'node:net'
import { Client as MemjsClient, Server as MemjsServer } from 'memjs'
import { MemcachedNode, MetaConnection, keyEncoding, type CasDeleteResult, type ItemForMove } from '../protocol/index.js'
import { isServerError, ServerError, timedOut, unreachable } from '../protocol/errors.js'
import { isCommandError } from './errors.js'

export type { CasDeleteResult, ItemForMove }

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
  /** The moves' and repairs' operations, over the meta connection (protocol/node.ts). */
  private readonly node: MemcachedNode

  constructor(
    address: string,
    private readonly host: string,
    private readonly port: number,
    private readonly opts: NodeOptions,
  ) {
    this.address = address
    this.node = new MemcachedNode({ host, port }, () => this.metaConnection())
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

  /** The item with its flags, remaining TTL and CAS (the source's LRU not bumped); undefined when absent. */
  async readForMove(key: Buffer): Promise<ItemForMove | undefined> {
    return (await this.node.readForMove([key]))[0]
  }

  /**
   * Adds the item with its flags and remaining TTL: the CAS the new item got when stored (so that
   * it can be withdrawn only if nobody replaced it since; "" if the server did not say),
   * undefined when the key was already there.
   */
  async addItem(key: Buffer, item: ItemForMove): Promise<string | undefined> {
    const result = (await this.node.add([{ key, item }]))[0]!
    return result.stored ? result.cas : undefined
  }

  /** Deletes the item only if its CAS is unchanged: deleted, changed since read (EX), or gone (NF). */
  async deleteIfCas(key: Buffer, cas: string): Promise<CasDeleteResult> {
    return (await this.node.deleteIfCas([{ key, cas }]))[0]!
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
