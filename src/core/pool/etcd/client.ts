/**
 * A small etcd v3 client over etcd's JSON gateway (`/v3/...`, base64 keys and values, 64-bit
 * numbers as strings), on node:http/https: no dependency, TLS and client certificates through
 * the standard agent options, and several endpoints tried in order. memdrain needs only range,
 * txn, put, leases (grant, keep-alive, revoke) and one watch per pool; a gRPC client (etcd3 on
 * grpc-js and protobufjs) would add several MB for that.
 *
 * Errors name the endpoints as host:port and never carry credentials.
 */
import http from 'node:http'
import https from 'node:https'
import { readFileSync } from 'node:fs'
import { MemdrainError, ExitCode } from '../../errors.js'

export interface EtcdEndpoint {
  host: string
  port: number
}

export interface EtcdConnection {
  endpoints: EtcdEndpoint[]
  /** PREFIX without trailing slash, e.g. "/memdrain/prod". */
  prefix: string
  tls?: { ca?: Buffer | undefined; cert?: Buffer | undefined; key?: Buffer | undefined } | undefined
  auth?: { username: string; password: string } | undefined
  /** Per request, ms (default 3000). */
  timeoutMs?: number | undefined
}

export interface EtcdKeyValue {
  key: string
  value: string
  createRevision: string
  modRevision: string
  lease: string
}

export interface EtcdCompare {
  key: string
  target: 'CREATE' | 'MOD' | 'VERSION' | 'VALUE' | 'LEASE'
  result?: 'EQUAL' | 'NOT_EQUAL' | 'GREATER' | 'LESS'
  createRevision?: string
  modRevision?: string
  value?: string
  lease?: string
}

export type EtcdOp = { put: { key: string; value: string; lease?: string } } | { delete: { key: string } } | { range: { key: string } }

export interface EtcdTxnResult {
  succeeded: boolean
  revision: string
  /** kvs of range ops, in op order (empty arrays for other ops). */
  ranges: EtcdKeyValue[][]
}

/** What etcd said about a request, when it answered with an error (permission, lease not found…). */
export class EtcdRequestError extends Error {
  constructor(
    message: string,
    readonly grpcCode: number | undefined,
  ) {
    super(message)
    this.name = 'EtcdRequestError'
  }
}

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64')
const unb64 = (s: string | undefined): string => (s === undefined ? '' : Buffer.from(s, 'base64').toString('utf8'))

/** The range end that selects every key starting with `prefix`. */
function prefixEnd(prefix: string): string {
  const bytes = Buffer.from(prefix, 'utf8')
  for (let i = bytes.length - 1; i >= 0; i--) {
    if (bytes[i]! < 0xff) {
      const end = Buffer.from(bytes.subarray(0, i + 1))
      end[i]!++
      return end.toString('base64')
    }
  }
  return b64('\0')
}

interface RawKv {
  key?: string
  value?: string
  create_revision?: string
  mod_revision?: string
  lease?: string
}

function kvOf(raw: RawKv): EtcdKeyValue {
  return {
    key: unb64(raw.key),
    value: unb64(raw.value),
    createRevision: raw.create_revision ?? '0',
    modRevision: raw.mod_revision ?? '0',
    lease: raw.lease ?? '0',
  }
}

export function endpointList(endpoints: readonly EtcdEndpoint[]): string {
  return endpoints.map((e) => `${e.host}:${e.port}`).join(',')
}

/** etcd could not be reached at any endpoint (exit 3: a precondition, like an unreachable server). */
export function etcdUnreachable(endpoints: readonly EtcdEndpoint[], why: string): MemdrainError {
  return new MemdrainError(`etcd is unreachable at ${endpointList(endpoints)}: ${why}`, {
    code: 'POOL_STORE_UNREACHABLE',
    exitCode: ExitCode.precondition,
    suggestions: [
      'Check that etcd runs and listens on the address in --pool / MEMDRAIN_POOL (etcd://HOST:PORT[,HOST:PORT]/PREFIX).',
      'For TLS set MEMDRAIN_ETCD_CA (and MEMDRAIN_ETCD_CERT, MEMDRAIN_ETCD_KEY for client certificates).',
    ],
  })
}

/** Reads the TLS and credential settings from the environment (never printed). */
export function etcdSecurityFromEnv(env: NodeJS.ProcessEnv): Pick<EtcdConnection, 'tls' | 'auth'> {
  const file = (name: string): Buffer | undefined => {
    const p = env[name]
    if (p === undefined || p === '') return undefined
    try {
      return readFileSync(p)
    } catch (err) {
      throw new MemdrainError(`cannot read ${name} (${p}): ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, {
        code: 'ETCD_TLS_FILE',
        exitCode: ExitCode.usage,
        suggestions: [`Point ${name} at a readable PEM file.`],
      })
    }
  }
  const ca = file('MEMDRAIN_ETCD_CA')
  const cert = file('MEMDRAIN_ETCD_CERT')
  const key = file('MEMDRAIN_ETCD_KEY')
  const out: Pick<EtcdConnection, 'tls' | 'auth'> = {}
  if (ca !== undefined || cert !== undefined || key !== undefined || env.MEMDRAIN_ETCD_TLS === '1') out.tls = { ca, cert, key }
  const username = env.MEMDRAIN_ETCD_USERNAME
  if (username !== undefined && username !== '') out.auth = { username, password: env.MEMDRAIN_ETCD_PASSWORD ?? '' }
  return out
}

export class EtcdClient {
  private preferred = 0
  private token: string | undefined
  private readonly agent: http.Agent
  private readonly timeoutMs: number

  constructor(readonly conn: EtcdConnection) {
    this.timeoutMs = conn.timeoutMs ?? 3000
    this.agent =
      conn.tls !== undefined
        ? new https.Agent({ keepAlive: true, ...(conn.tls.ca ? { ca: conn.tls.ca } : {}), ...(conn.tls.cert ? { cert: conn.tls.cert } : {}), ...(conn.tls.key ? { key: conn.tls.key } : {}) })
        : new http.Agent({ keepAlive: true })
  }

  get endpoints(): string {
    return endpointList(this.conn.endpoints)
  }

  /** Full key under the prefix: key("pool") = "<prefix>/pool". */
  key(name: string): string {
    return `${this.conn.prefix}/${name}`
  }

  async get(key: string): Promise<{ kv: EtcdKeyValue | undefined; revision: string }> {
    const r = (await this.call('/v3/kv/range', { key: b64(key) })) as { header?: { revision?: string }; kvs?: RawKv[] }
    const first = r.kvs?.[0]
    return { kv: first === undefined ? undefined : kvOf(first), revision: r.header?.revision ?? '0' }
  }

  async getPrefix(prefix: string): Promise<EtcdKeyValue[]> {
    const r = (await this.call('/v3/kv/range', { key: b64(prefix), range_end: prefixEnd(prefix) })) as { kvs?: RawKv[] }
    return (r.kvs ?? []).map(kvOf)
  }

  async put(key: string, value: string, lease?: string): Promise<string> {
    const r = (await this.call('/v3/kv/put', { key: b64(key), value: b64(value), ...(lease !== undefined ? { lease } : {}) })) as { header?: { revision?: string } }
    return r.header?.revision ?? '0'
  }

  async txn(compare: EtcdCompare[], success: EtcdOp[], failure: EtcdOp[] = []): Promise<EtcdTxnResult> {
    const op = (o: EtcdOp): unknown =>
      'put' in o
        ? { request_put: { key: b64(o.put.key), value: b64(o.put.value), ...(o.put.lease !== undefined ? { lease: o.put.lease } : {}) } }
        : 'delete' in o
          ? { request_delete_range: { key: b64(o.delete.key) } }
          : { request_range: { key: b64(o.range.key) } }
    const body = {
      compare: compare.map((c) => ({
        key: b64(c.key),
        target: c.target,
        result: c.result ?? 'EQUAL',
        ...(c.createRevision !== undefined ? { create_revision: c.createRevision } : {}),
        ...(c.modRevision !== undefined ? { mod_revision: c.modRevision } : {}),
        ...(c.value !== undefined ? { value: b64(c.value) } : {}),
        ...(c.lease !== undefined ? { lease: c.lease } : {}),
      })),
      success: success.map(op),
      failure: failure.map(op),
    }
    const r = (await this.call('/v3/kv/txn', body)) as {
      succeeded?: boolean
      header?: { revision?: string }
      responses?: { response_range?: { kvs?: RawKv[] } }[]
    }
    return {
      succeeded: r.succeeded === true,
      revision: r.header?.revision ?? '0',
      ranges: (r.responses ?? []).map((x) => (x.response_range?.kvs ?? []).map(kvOf)),
    }
  }

  async leaseGrant(ttlSeconds: number): Promise<string> {
    const r = (await this.call('/v3/lease/grant', { TTL: String(ttlSeconds) })) as { ID?: string }
    if (r.ID === undefined) throw new EtcdRequestError('etcd granted no lease', undefined)
    return r.ID
  }

  /** One keep-alive; returns the remaining TTL in seconds (0: the lease is gone). */
  async leaseKeepAlive(id: string): Promise<number> {
    const r = (await this.call('/v3/lease/keepalive', { ID: id })) as { result?: { TTL?: string } }
    return Number(r.result?.TTL ?? 0)
  }

  async leaseRevoke(id: string): Promise<void> {
    await this.call('/v3/kv/lease/revoke', { ID: id }).catch((err: unknown) => {
      if (err instanceof EtcdRequestError && /lease not found/.test(err.message)) return
      throw err
    })
  }

  /**
   * Watches `key` from `startRevision` (inclusive). `onEvent` gets each change (value undefined:
   * deleted); the promise ends when the stream ends or breaks (the caller re-watches), or when
   * `signal` aborts.
   */
  watch(key: string, startRevision: string, onEvent: (kv: EtcdKeyValue, deleted: boolean) => void, signal: AbortSignal, onCreated?: () => void): Promise<void> {
    return new Promise((resolve, reject) => {
      const ep = this.conn.endpoints[this.preferred]!
      const body = JSON.stringify({ create_request: { key: b64(key), start_revision: startRevision } })
      const req = this.transport().request(
        { host: ep.host, port: ep.port, path: '/v3/watch', method: 'POST', agent: false, headers: this.headers(body), ...this.tlsOptions() },
        (res) => {
          if (res.statusCode !== 200) {
            res.resume()
            reject(new EtcdRequestError(`watch answered HTTP ${res.statusCode ?? '?'}`, undefined))
            return
          }
          let buf = ''
          res.setEncoding('utf8')
          res.on('data', (chunk: string) => {
            buf += chunk
            let nl: number
            while ((nl = buf.indexOf('\n')) >= 0) {
              const line = buf.slice(0, nl).trim()
              buf = buf.slice(nl + 1)
              if (line === '') continue
              let msg: { result?: { created?: boolean; canceled?: boolean; compact_revision?: string; events?: { type?: string; kv?: RawKv }[] }; error?: { message?: string } }
              try {
                msg = JSON.parse(line) as typeof msg
              } catch {
                continue
              }
              if (msg.error !== undefined) {
                req.destroy()
                reject(new EtcdRequestError(`watch failed: ${msg.error.message ?? 'error'}`, undefined))
                return
              }
              const r = msg.result
              if (r?.created === true) onCreated?.()
              for (const ev of r?.events ?? []) onEvent(kvOf(ev.kv ?? {}), ev.type === 'DELETE')
              if (r?.canceled === true || (r?.compact_revision !== undefined && r.compact_revision !== '0')) {
                req.destroy()
                resolve()
                return
              }
            }
          })
          res.on('end', () => resolve())
          res.on('error', (err) => reject(err))
          res.on('close', () => resolve())
        },
      )
      const abort = (): void => {
        req.destroy()
        resolve()
      }
      signal.addEventListener('abort', abort, { once: true })
      req.on('error', (err) => {
        signal.removeEventListener('abort', abort)
        if (signal.aborted) resolve()
        else {
          this.preferred = (this.preferred + 1) % this.conn.endpoints.length
          reject(err)
        }
      })
      req.on('close', () => signal.removeEventListener('abort', abort))
      // A watch must not keep an application alive (the library's timers are unref'd too).
      req.on('socket', (socket) => socket.unref())
      req.end(body)
    })
  }

  close(): void {
    this.agent.destroy()
  }

  private transport(): typeof http | typeof https {
    return this.conn.tls !== undefined ? https : http
  }

  private tlsOptions(): https.RequestOptions {
    const t = this.conn.tls
    if (t === undefined) return {}
    return { ...(t.ca ? { ca: t.ca } : {}), ...(t.cert ? { cert: t.cert } : {}), ...(t.key ? { key: t.key } : {}) }
  }

  private headers(body: string): http.OutgoingHttpHeaders {
    const h: http.OutgoingHttpHeaders = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }
    if (this.token !== undefined) h.authorization = this.token
    return h
  }

  /** One request, tried at each endpoint in turn from the last one that worked; authenticates when needed. */
  private async call(path: string, payload: unknown, retriedAuth = false): Promise<unknown> {
    if (this.conn.auth !== undefined && this.token === undefined && path !== '/v3/auth/authenticate') await this.authenticate()
    const body = JSON.stringify(payload)
    const n = this.conn.endpoints.length
    let lastError = ''
    for (let i = 0; i < n; i++) {
      const idx = (this.preferred + i) % n
      const ep = this.conn.endpoints[idx]!
      let res: { status: number; text: string }
      try {
        res = await this.request(ep, path, body)
      } catch (err) {
        lastError = `${ep.host}:${ep.port}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`
        continue
      }
      this.preferred = idx
      let doc: { error?: string; message?: string; code?: number } & Record<string, unknown>
      try {
        doc = JSON.parse(res.text) as typeof doc
      } catch {
        throw new EtcdRequestError(`etcd at ${ep.host}:${ep.port} answered ${path} with HTTP ${res.status} and no JSON (is this an etcd ≥ 3.4 client port?)`, undefined)
      }
      if (res.status !== 200 || doc.error !== undefined) {
        const message = doc.message ?? doc.error ?? `HTTP ${res.status}`
        if (!retriedAuth && this.conn.auth !== undefined && /token|auth/i.test(message) && doc.code === 16) {
          this.token = undefined
          return this.call(path, payload, true)
        }
        throw new EtcdRequestError(`etcd refused ${path}: ${message}`, doc.code)
      }
      return doc
    }
    throw etcdUnreachable(this.conn.endpoints, lastError)
  }

  private async authenticate(): Promise<void> {
    const a = this.conn.auth!
    let r: { token?: string }
    try {
      r = (await this.call('/v3/auth/authenticate', { name: a.username, password: a.password })) as { token?: string }
    } catch (err) {
      if (err instanceof EtcdRequestError) {
        throw new MemdrainError(`etcd at ${this.endpoints} refused the credentials in MEMDRAIN_ETCD_USERNAME / MEMDRAIN_ETCD_PASSWORD`, {
          code: 'POOL_STORE_AUTH',
          exitCode: ExitCode.precondition,
          suggestions: ['Check the user and password given in the environment (they are never printed).'],
        })
      }
      throw err
    }
    this.token = r.token
  }

  private request(ep: EtcdEndpoint, path: string, body: string): Promise<{ status: number; text: string }> {
    return new Promise((resolve, reject) => {
      const req = this.transport().request(
        { host: ep.host, port: ep.port, path, method: 'POST', agent: this.agent, headers: this.headers(body), timeout: this.timeoutMs },
        (res) => {
          let text = ''
          res.setEncoding('utf8')
          res.on('data', (c: string) => (text += c))
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text }))
          res.on('error', reject)
        },
      )
      req.on('timeout', () => req.destroy(Object.assign(new Error(`no answer within ${this.timeoutMs} ms`), { code: 'ETIMEDOUT' })))
      req.on('error', reject)
      req.end(body)
    })
  }
}
