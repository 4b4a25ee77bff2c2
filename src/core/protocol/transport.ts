import { connect as netConnect, isIP, type OnReadOpts, type Socket } from 'node:net'
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls'
import { readFileSync } from 'node:fs'
import { ExitCode } from '../errors.js'
import { formatAddress, type ServerAddress } from './address.js'
import { ServerError, connectTimedOut, protocolError, unreachable } from './errors.js'

/**
 * How memdrain reaches a memcached server: plain TCP or TLS, and memcached's ASCII
 * authentication (`-Y` auth file, memcached ≥ 1.5.15). Every data-path socket (the meta
 * connection and the metadump reader) is opened here, so both authenticate the same way.
 *
 * Settings come from the environment (or --auth-file on the command line, see useAuthFile):
 *   MEMDRAIN_MEMCACHED_USERNAME, MEMDRAIN_MEMCACHED_PASSWORD   credentials
 *   MEMDRAIN_AUTH_FILE                                         a file whose first line is `user:password`
 *   MEMDRAIN_TLS=1                                             connect with TLS (memcached -Z)
 *   MEMDRAIN_TLS_CA, MEMDRAIN_TLS_CERT, MEMDRAIN_TLS_KEY       PEM files: CA to verify the server, client cert/key
 *   MEMDRAIN_TLS_INSECURE=1                                    do not verify the server's certificate
 * The password is never part of a message, an error or the --json output.
 */

export interface Credentials {
  username: string
  password: string
  /** Where they came from, for messages ("MEMDRAIN_MEMCACHED_USERNAME/PASSWORD", a file path). */
  source: string
}

export interface TransportSettings {
  credentials?: Credentials | undefined
  tls?: ConnectionOptions | undefined
}

let authFileOverride: string | undefined
let cached: TransportSettings | undefined

/** --auth-file: takes precedence over the environment. Call before any connection is made. */
export function useAuthFile(file: string | undefined): void {
  authFileOverride = file
  cached = undefined
}

function transportError(code: 'AUTH_CONFIG' | 'TLS_CONFIG', message: string, suggestions: string[]): ServerError {
  return new ServerError(code, '', message, { exitCode: ExitCode.usage, suggestions })
}

function readCredentialsFile(file: string): Credentials {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw transportError('AUTH_CONFIG', `cannot read the auth file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, [
      'Pass --auth-file (or MEMDRAIN_AUTH_FILE) naming a readable file whose first line is user:password.',
    ])
  }
  const line = text.split(/\r?\n/).find((l) => l.trim() !== '') ?? ''
  const colon = line.indexOf(':')
  if (colon <= 0 || colon === line.length - 1) {
    throw transportError('AUTH_CONFIG', `the auth file ${file} must start with a line user:password (as in memcached's -Y file)`, [
      `Write "user:password" on the first line of ${file}.`,
    ])
  }
  return { username: line.slice(0, colon), password: line.slice(colon + 1), source: file }
}

function readPem(name: string, file: string): Buffer {
  try {
    return readFileSync(file)
  } catch (err) {
    throw transportError('TLS_CONFIG', `cannot read ${name} ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, [`Point ${name} at a readable PEM file.`])
  }
}

/** The settings in force (read once from the environment). */
export function transportSettings(env: NodeJS.ProcessEnv = process.env): TransportSettings {
  if (cached !== undefined && env === process.env) return cached
  const out: TransportSettings = {}
  const file = authFileOverride ?? env.MEMDRAIN_AUTH_FILE
  const user = env.MEMDRAIN_MEMCACHED_USERNAME
  const pass = env.MEMDRAIN_MEMCACHED_PASSWORD
  if (file !== undefined && file !== '') {
    out.credentials = readCredentialsFile(file)
  } else if ((user ?? '') !== '' || (pass ?? '') !== '') {
    if ((user ?? '') === '' || (pass ?? '') === '') {
      throw transportError('AUTH_CONFIG', 'set both MEMDRAIN_MEMCACHED_USERNAME and MEMDRAIN_MEMCACHED_PASSWORD, or neither', ['Set the missing one, or use --auth-file.'])
    }
    if (/\s/.test(user!)) throw transportError('AUTH_CONFIG', 'MEMDRAIN_MEMCACHED_USERNAME must not contain spaces (memcached splits user and password at the first space)', [])
    out.credentials = { username: user!, password: pass!, source: 'MEMDRAIN_MEMCACHED_USERNAME/PASSWORD' }
  }
  if (env.MEMDRAIN_TLS === '1' || env.MEMDRAIN_TLS === 'true') {
    const tls: ConnectionOptions = { rejectUnauthorized: env.MEMDRAIN_TLS_INSECURE !== '1' }
    if (env.MEMDRAIN_TLS_CA) tls.ca = readPem('MEMDRAIN_TLS_CA', env.MEMDRAIN_TLS_CA)
    if (env.MEMDRAIN_TLS_CERT) tls.cert = readPem('MEMDRAIN_TLS_CERT', env.MEMDRAIN_TLS_CERT)
    if (env.MEMDRAIN_TLS_KEY) tls.key = readPem('MEMDRAIN_TLS_KEY', env.MEMDRAIN_TLS_KEY)
    out.tls = tls
  }
  if (env === process.env) cached = out
  return out
}

export function authFailed(server: string, creds: Credentials, reply: string): ServerError {
  return new ServerError('AUTH_FAILED', server, `memcached at ${server} refused the credentials from ${creds.source} (it answered ${JSON.stringify(reply.slice(0, 60))}).`, {
    exitCode: ExitCode.precondition,
    suggestions: [`Check the user and password against the auth file memcached on ${server} was started with (-Y).`],
  })
}

export function authRequired(server: string): ServerError {
  return new ServerError('AUTH_REQUIRED', server, `memcached at ${server} requires authentication (started with -Y): it answered "CLIENT_ERROR unauthenticated".`, {
    exitCode: ExitCode.precondition,
    suggestions: ['Set MEMDRAIN_MEMCACHED_USERNAME and MEMDRAIN_MEMCACHED_PASSWORD, or pass --auth-file FILE (first line user:password).'],
  })
}

export function saslOnly(server: string): ServerError {
  return new ServerError(
    'SASL_REQUIRED',
    server,
    `memcached at ${server} requires SASL authentication (started with -S): it speaks only the binary protocol then, and closes text-protocol connections. memdrain lists keys with "lru_crawler metadump", which exists only in the text protocol, so it cannot enumerate this server.`,
    {
      exitCode: ExitCode.precondition,
      suggestions: [
        `Restart memcached on ${server} with ASCII authentication (-Y authfile) instead of -S, and give memdrain the credentials (MEMDRAIN_MEMCACHED_USERNAME/PASSWORD or --auth-file).`,
      ],
    },
  )
}

/**
 * Asks a server that closed a text connection whether it speaks binary SASL: a binary
 * "list mechanisms" request (opcode 0x20) answered with a binary response (magic 0x81).
 */
export function probeBinarySasl(addr: ServerAddress, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = netConnect({ host: addr.host, port: addr.port })
    const done = (v: boolean): void => {
      clearTimeout(timer)
      socket.destroy()
      resolve(v)
    }
    const timer = setTimeout(() => done(false), timeoutMs)
    socket.once('connect', () => {
      const req = Buffer.alloc(24)
      req[0] = 0x80
      req[1] = 0x20
      socket.write(req)
    })
    socket.once('data', (d: Buffer) => done(d[0] === 0x81))
    socket.once('error', () => done(false))
    socket.once('close', () => done(false))
  })
}

/**
 * Reads of a socket into one buffer, reused read after read (net's `onread`): no allocation per
 * read, so nothing that only a garbage collection frees. A dump reads its whole listing, tens of
 * megabytes, and with a fresh buffer per read the process holds what the last collection left
 * (measured: +13 MB of peak RSS on a 1M-key drain once the per-key path allocated less). `onData`
 * gets a view of what arrived, valid only during the call; set it once openSocket resolved.
 */
export class SocketReader {
  onData: (chunk: Buffer) => void = () => undefined
  private readonly buffer: Buffer

  constructor(size = 64 * 1024) {
    this.buffer = Buffer.allocUnsafe(size)
  }

  /** @internal the `onread` option of the connection. */
  get onread(): OnReadOpts {
    return {
      buffer: this.buffer,
      callback: (n: number) => {
        this.onData(this.buffer.subarray(0, n))
        return true
      },
    }
  }
}

/**
 * Reads one "\r\n"-terminated line from a fresh socket (the auth reply), then hands the socket
 * back clean. With a reader, the line comes through it (the socket emits no 'data').
 */
function readLine(socket: Socket, server: string, timeoutMs: number, reader: SocketReader | undefined): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = ''
    const cleanup = (): void => {
      clearTimeout(timer)
      if (reader !== undefined) reader.onData = () => undefined
      else socket.removeListener('data', onData)
      socket.removeListener('error', onError)
      socket.removeListener('close', onClose)
    }
    const onData = (d: Buffer): void => {
      buf += d.toString('latin1')
      const nl = buf.indexOf('\n')
      if (nl < 0) return
      cleanup()
      if (nl + 1 < buf.length) {
        // memcached answers the version probe and the auth set with one line each, and nothing
        // else was asked: more is not memcached.
        if (reader !== undefined) return reject(protocolError(server, 'more than one line in reply to the authentication'))
        socket.unshift(Buffer.from(buf.slice(nl + 1), 'latin1'))
      }
      resolve(buf.slice(0, nl).replace(/\r$/, ''))
    }
    const onError = (err: Error): void => {
      cleanup()
      reject(unreachable(server, err))
    }
    const onClose = (): void => {
      cleanup()
      resolve('')
    }
    const timer = setTimeout(() => {
      cleanup()
      reject(connectTimedOut(server, timeoutMs))
    }, timeoutMs)
    if (reader !== undefined) reader.onData = onData
    else socket.on('data', onData)
    socket.once('error', onError)
    socket.once('close', onClose)
  })
}

/**
 * A connected (and, with credentials, authenticated) socket to `addr`, with no listeners left
 * on it. Fails with SERVER_UNREACHABLE, SERVER_TIMEOUT or AUTH_FAILED. With `reader`, what
 * the socket receives goes to reader.onData (see SocketReader), never to 'data' listeners.
 */
export async function openSocket(addr: ServerAddress, timeoutMs: number, settings: TransportSettings = transportSettings(), reader?: SocketReader): Promise<Socket> {
  const server = formatAddress(addr)
  const socket = await new Promise<Socket>((resolve, reject) => {
    const tls = settings.tls
    const onread = reader === undefined ? {} : { onread: reader.onread }
    const s: Socket =
      tls !== undefined
        ? tlsConnect({ host: addr.host, port: addr.port, ...(isIP(addr.host) === 0 ? { servername: addr.host } : {}), ...tls, ...onread })
        : netConnect({ host: addr.host, port: addr.port, ...onread })
    const timer = setTimeout(() => {
      s.destroy()
      reject(connectTimedOut(server, timeoutMs))
    }, timeoutMs)
    const onError = (err: Error): void => {
      clearTimeout(timer)
      s.destroy()
      const tlsProblem = tls !== undefined && /certificate|ssl|tls|self.signed|wrong version/i.test(err.message)
      reject(
        tlsProblem
          ? new ServerError('TLS_FAILED', server, `TLS connection to memcached at ${server} failed: ${err.message}.`, {
              exitCode: ExitCode.precondition,
              suggestions: ['Check that the server runs with -Z and that MEMDRAIN_TLS_CA names the CA that signed its certificate.'],
              cause: err,
            })
          : unreachable(server, err),
      )
    }
    s.once('error', onError)
    s.once(tls !== undefined ? 'secureConnect' : 'connect', () => {
      clearTimeout(timer)
      s.removeListener('error', onError)
      resolve(s)
    })
  })
  const creds = settings.credentials
  if (creds === undefined) return socket
  // Send the credentials only to a server that asks for them: to one without -Y the auth
  // command is an ordinary set, and would store the password as an item.
  socket.write('version\r\n')
  let probe: string
  try {
    probe = await readLine(socket, server, timeoutMs, reader)
  } catch (err) {
    socket.destroy()
    throw err
  }
  // Anything else (VERSION …): no auth needed; the reply is consumed here, the caller asks again.
  if (probe !== 'CLIENT_ERROR unauthenticated') return socket
  // memcached -Y: the first command is a set whose data is "<user> <password>"; any key, flags, exptime.
  const secret = Buffer.from(`${creds.username} ${creds.password}`, 'utf8')
  socket.write(Buffer.concat([Buffer.from(`set memdrain-auth 0 0 ${secret.length}\r\n`), secret, Buffer.from('\r\n')]))
  secret.fill(0)
  let reply: string
  try {
    reply = await readLine(socket, server, timeoutMs, reader)
  } catch (err) {
    socket.destroy()
    throw err
  }
  if (reply !== 'STORED') {
    socket.destroy()
    throw authFailed(server, creds, reply === '' ? '(connection closed)' : reply)
  }
  return socket
}
