import { freeLoopbackPort } from '../../src/core/local/memcached-launcher.js'
export { pidAlive } from '../../src/core/pool/lock.js'
/**
 * Real memcached servers for tests, and small TCP tools to talk to them.
 *
 *   const s = await startMemcached()
 *   after(() => s.stop())
 *
 * Every server started here is registered; when the test process exits (normally, on an
 * uncaught error, or on SIGINT/SIGTERM) any still running is SIGKILLed by PID, so a failing
 * test leaves nothing behind. The child and its pipes are unref'd: a test that forgets stop()
 * does not hang the process.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { createServer, connect, type Socket } from 'node:net'
import { once } from 'node:events'
import { readdirSync, readFileSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'

export interface StartOptions {
  /** -m, MB of item memory (default 64). */
  memoryMb?: number
  /** -I, largest item, e.g. '2m' (memcached default 1m). */
  itemSizeMax?: string
  /** -t, worker threads (default 2). */
  threads?: number
  /** -X: refuse `lru_crawler metadump`. */
  disableDumps?: boolean
  /** -o no_lru_crawler. */
  noLruCrawler?: boolean
  extraArgs?: string[]
  /** Extra environment for the process (e.g. SASL_CONF_PATH). */
  env?: Record<string, string>
  /**
   * Ready once it accepts a TCP connection, without asking `version` (servers that will not
   * answer a plain-text `version`: TLS -Z, SASL -S). A -Y server's "CLIENT_ERROR
   * unauthenticated" counts as ready anyway.
   */
  readyWhenListening?: boolean
  /** -l: the addresses to listen on (default 127.0.0.1); e.g. '127.0.0.1,::1' for IPv4 and IPv6 loopback. */
  listen?: string
}

export interface MemcachedServer {
  readonly host: '127.0.0.1'
  readonly port: number
  /** "127.0.0.1:port" */
  readonly address: string
  /** PID of the current process (changes on restart). */
  readonly pid: number
  /** False once the process has exited. */
  readonly running: boolean
  /** Recent stdout/stderr of the process, for diagnostics. */
  output(): string
  /**
   * SIGTERM by PID, wait for exit, SIGKILL after 2 s. Idempotent. memcached 1.6 exits on SIGTERM
   * only at its next 1-second clock tick, so this takes up to ~1 s: use kill() when speed matters.
   */
  stop(): Promise<void>
  /** SIGKILL by PID and wait for exit: immediate (memcached keeps nothing worth a clean shutdown). */
  kill(): Promise<void>
  /**
   * SIGSTOP, and returns once the kernel reports the process stopped (a signal is delivered
   * asynchronously: a busy worker thread could otherwise still answer). The server then accepts
   * TCP connections (kernel backlog) but answers nothing.
   */
  pause(): void
  /** SIGCONT. */
  resume(): void
  /** Kills and starts again on the same port with the same options: it comes back empty. */
  restart(): Promise<void>
}

const HOST = '127.0.0.1'
const READY_TIMEOUT_MS = 5000
const OUTPUT_LIMIT = 16 * 1024

const running = new Set<ChildProcess>()
let memcachedPath: string | undefined
let hooksInstalled = false

function killAllNow(): void {
  for (const child of running) {
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(child.pid, 'SIGKILL')
      } catch {
        // already gone
      }
    }
  }
  running.clear()
}

function installHooks(): void {
  if (hooksInstalled) return
  hooksInstalled = true
  process.on('exit', killAllNow)
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    const onSignal = (): void => {
      killAllNow()
      process.removeListener(signal, onSignal)
      // Keep the default behaviour (exit by that signal) unless someone else handles it.
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal)
    }
    process.on(signal, onSignal)
  }
}

function findMemcached(): string {
  if (memcachedPath !== undefined) return memcachedPath
  const found = spawnSync('sh', ['-c', 'command -v memcached'], { encoding: 'utf8' })
  const path = (found.stdout ?? '').trim()
  if (found.status !== 0 || path === '') {
    throw new Error('memcached is not installed (not on PATH): run `apt-get install memcached` (scripts/ in this repo do it) to run these tests.')
  }
  memcachedPath = path
  return path
}

/**
 * Whether this machine has the IPv6 loopback (::1 on lo): tests of IPv6 spellings start
 * memcached with `listen: '127.0.0.1,::1'` and skip, saying why, without it.
 */
export function hasIPv6Loopback(): boolean {
  try {
    return readFileSync('/proc/net/if_inet6', 'utf8').split('\n').some((l) => l.startsWith('00000000000000000000000000000001 '))
  } catch {
    return false
  }
}

/** A TCP port that was free a moment ago (bind 127.0.0.1:0, read it, close). */
export const freePort = freeLoopbackPort

function argsFor(port: number, opts: StartOptions): string[] {
  const args = ['-u', 'root', '-l', opts.listen ?? HOST, '-p', String(port), '-U', '0', '-m', String(opts.memoryMb ?? 64), '-t', String(opts.threads ?? 2)]
  if (opts.itemSizeMax !== undefined) args.push('-I', opts.itemSizeMax)
  if (opts.disableDumps === true) args.push('-X')
  if (opts.noLruCrawler === true) args.push('-o', 'no_lru_crawler')
  args.push(...(opts.extraArgs ?? []))
  return args
}

interface Launched {
  child: ChildProcess
  output: () => string
}

function launch(port: number, opts: StartOptions): Launched {
  const child = spawn(findMemcached(), argsFor(port, opts), { stdio: ['ignore', 'pipe', 'pipe'], detached: false, env: { ...process.env, ...opts.env } })
  let output = ''
  const collect = (d: Buffer): void => {
    output += d.toString('utf8')
    if (output.length > OUTPUT_LIMIT) output = output.slice(-OUTPUT_LIMIT)
  }
  child.stdout?.on('data', collect)
  child.stderr?.on('data', collect)
  child.unref()
  ;(child.stdout as Socket | null)?.unref()
  ;(child.stderr as Socket | null)?.unref()
  running.add(child)
  child.once('exit', () => running.delete(child))
  return { child, output: () => output }
}

/** Polls `version` until the server answers VERSION, the process dies, or the timeout passes. */
async function waitReady(l: Launched, port: number, opts: StartOptions = {}): Promise<'ready' | 'port-in-use'> {
  const deadline = Date.now() + READY_TIMEOUT_MS
  let lastError = ''
  while (Date.now() < deadline) {
    if (l.child.exitCode !== null || l.child.signalCode !== null) {
      return /Address already in use|failed to listen/i.test(l.output()) ? 'port-in-use' : failStart(l, `exited (${l.child.exitCode ?? l.child.signalCode})`)
    }
    try {
      if (opts.readyWhenListening === true) {
        await new Promise<void>((resolve, reject) => {
          const s = connect({ host: HOST, port }, () => {
            s.destroy()
            resolve()
          })
          s.once('error', reject)
        })
        return 'ready'
      }
      const reply = await rawCommand(`${HOST}:${port}`, 'version\r\n', { idleMs: 200, timeoutMs: 500 })
      if (reply.startsWith('VERSION ') || reply.startsWith('CLIENT_ERROR unauthenticated')) return 'ready'
      lastError = `answered ${JSON.stringify(reply)}`
    } catch (err) {
      lastError = (err as Error).message
    }
    await sleep(20)
  }
  stopChild(l.child)
  return failStart(l, `did not answer "version" within ${READY_TIMEOUT_MS} ms (${lastError})`)
}

function failStart(l: Launched, why: string): never {
  throw new Error(`\`${l.child.spawnargs.join(' ')}\` ${why}. Output:\n${l.output() || '(none)'}`)
}

function stopChild(child: ChildProcess, signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return Promise.resolve()
  const pid = child.pid
  const exited = once(child, 'exit').then(() => undefined)
  try {
    process.kill(pid, signal)
    process.kill(pid, 'SIGCONT') // a paused server handles SIGTERM only once continued
  } catch {
    return exited
  }
  const killer = setTimeout(() => {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {
      // gone
    }
  }, 2000)
  return exited.finally(() => clearTimeout(killer))
}

/** Starts memcached on a free port and waits until it answers `version`. Retries on a port race. */
export async function startMemcached(opts: StartOptions = {}): Promise<MemcachedServer> {
  installHooks()
  findMemcached()
  for (let attempt = 0; ; attempt++) {
    const port = await freePort()
    const first = launch(port, opts)
    const state = await waitReady(first, port, opts)
    if (state === 'ready') return makeServer(port, opts, first)
    if (attempt >= 5) failStart(first, `could not bind a free port after ${attempt + 1} attempts`)
  }
}

function makeServer(port: number, opts: StartOptions, first: Launched): MemcachedServer {
  let current = first
  const server: MemcachedServer = {
    host: HOST,
    port,
    address: `${HOST}:${port}`,
    get pid() {
      return current.child.pid!
    },
    get running() {
      return current.child.exitCode === null && current.child.signalCode === null
    },
    output: () => current.output(),
    stop: () => stopChild(current.child),
    kill: () => stopChild(current.child, 'SIGKILL'),
    pause: () => {
      const pid = current.child.pid!
      process.kill(pid, 'SIGSTOP')
      waitStopped(pid)
    },
    resume: () => {
      process.kill(current.child.pid!, 'SIGCONT')
    },
    restart: async () => {
      await stopChild(current.child, 'SIGKILL')
      // The old socket may linger a moment; memcached sets SO_REUSEADDR, but retry a bit anyway.
      for (let attempt = 0; ; attempt++) {
        current = launch(port, opts)
        const state = await waitReady(current, port, opts)
        if (state === 'ready') return
        if (attempt >= 20) failStart(current, `could not bind port ${port} again`)
        await sleep(100)
      }
    },
  }
  return server
}

/**
 * Spins (synchronously, briefly) until /proc says every thread of the process is stopped;
 * no-op where /proc is missing.
 */
function waitStopped(pid: number): void {
  const deadline = Date.now() + 2000
  const stopped = (statFile: string): boolean => {
    const stat = readFileSync(statFile, 'latin1')
    // "pid (comm) S ...": the state follows the last ')'.
    const state = stat.charAt(stat.lastIndexOf(')') + 2)
    return state === 'T' || state === 't' || state === 'Z' || state === 'X'
  }
  while (Date.now() < deadline) {
    try {
      if (readdirSync(`/proc/${pid}/task`).every((tid) => stopped(`/proc/${pid}/task/${tid}/stat`))) return
    } catch {
      return
    }
  }
}

/** Stops every server started by this process. */
export async function stopAll(): Promise<void> {
  await Promise.all([...running].map((child) => stopChild(child)))
}

/** Starts a server for a node:test suite and stops it after: `const s = useMemcached(before, after)`. */
export function useMemcached(
  before: (fn: () => Promise<void>) => void,
  after: (fn: () => Promise<void>) => void,
  opts: StartOptions = {},
): { readonly server: MemcachedServer } {
  let server: MemcachedServer | undefined
  before(async () => {
    server = await startMemcached(opts)
  })
  after(async () => {
    await server?.stop()
  })
  return {
    get server(): MemcachedServer {
      if (server === undefined) throw new Error('useMemcached: the server is started in before(); use it inside tests')
      return server
    },
  }
}

const TERMINATOR =
  /(?:^|\n)(?:END|OK|STORED|NOT_STORED|EXISTS|NOT_FOUND|DELETED|TOUCHED|RESET|MN|HD[^\n]*|NS[^\n]*|EN[^\n]*|NF[^\n]*|EX[^\n]*|VERSION [^\n]*|BUSY[^\n]*|ERROR[^\n]*|CLIENT_ERROR[^\n]*|SERVER_ERROR[^\n]*|BADCLASS[^\n]*|\d+)\r?\n$/

/**
 * Sends `text` (exact bytes; write "\r\n" yourself) and returns what comes back (latin1), once
 * the reply ends with a terminator line (END, OK, STORED, MN, VERSION..., errors...) and nothing
 * more arrives for 20 ms, or after `idleMs` of silence, or at `timeoutMs`.
 */
export async function rawCommand(
  address: string,
  text: string | Buffer,
  opts: { idleMs?: number; timeoutMs?: number } = {},
): Promise<string> {
  const { host, port } = splitAddress(address)
  const idleMs = opts.idleMs ?? 300
  const timeoutMs = opts.timeoutMs ?? 5000
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port })
    let out = ''
    let idle: NodeJS.Timeout | undefined
    const done = (): void => {
      clearTimeout(overall)
      if (idle !== undefined) clearTimeout(idle)
      socket.destroy()
      resolve(out)
    }
    const overall = setTimeout(done, timeoutMs)
    const arm = (ms: number): void => {
      if (idle !== undefined) clearTimeout(idle)
      idle = setTimeout(done, ms)
    }
    socket.once('connect', () => {
      socket.write(text)
      arm(idleMs)
    })
    socket.on('data', (d: Buffer) => {
      out += d.toString('latin1')
      arm(TERMINATOR.test(out) ? 20 : idleMs)
    })
    socket.on('error', (err) => {
      clearTimeout(overall)
      if (idle !== undefined) clearTimeout(idle)
      socket.destroy()
      if (out !== '') resolve(out)
      else reject(err)
    })
    socket.on('close', done)
  })
}

export interface FakeServer {
  readonly host: '127.0.0.1'
  readonly port: number
  readonly address: string
  /** Lines received so far, across connections. */
  readonly received: string[]
  close(): Promise<void>
}

/**
 * A TCP server that answers like something that is not (or is an old) memcached. `handler` gets
 * each received line (without "\r\n") and returns the reply (sent as-is; "\r\n" is added when the
 * reply does not end with "\n"), or null to stay silent. With `closeAfterReply`, the server hangs
 * up after each reply (like an HTTP server answering 400).
 */
export async function fakeServer(
  handler: (line: string) => string | null,
  opts: { closeAfterReply?: boolean } = {},
): Promise<FakeServer> {
  const sockets = new Set<Socket>()
  const received: string[] = []
  const server = createServer((socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => socket.destroy())
    let pending = ''
    socket.on('data', (d: Buffer) => {
      pending += d.toString('latin1')
      let nl: number
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl).replace(/\r$/, '')
        pending = pending.slice(nl + 1)
        received.push(line)
        const reply = handler(line)
        if (reply === null) continue
        socket.write(reply.endsWith('\n') ? reply : `${reply}\r\n`)
        if (opts.closeAfterReply === true) {
          socket.end()
          return
        }
      }
    })
  })
  server.listen(0, HOST)
  await once(server, 'listening')
  const address = server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  return {
    host: HOST,
    port,
    address: `${HOST}:${port}`,
    received,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy()
        server.close(() => resolve())
      }),
  }
}

function splitAddress(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(':')
  return { host: address.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(address.slice(i + 1)) }
}
