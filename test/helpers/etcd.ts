/**
 * A real etcd for tests (Debian `etcd-server`, installed by scripts/setup.sh), on free loopback
 * ports with a temporary data directory. Every etcd started here is SIGKILLed by PID when the
 * test process exits; stop() / kill() / start() let a test take it away and bring it back with
 * its data (same ports, same directory).
 *
 *   const etcd = await startEtcd()
 *   after(() => etcd.remove())
 *   const url = etcd.poolUrl('/memdrain/test-1')   // etcd://127.0.0.1:PORT/memdrain/test-1
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { once } from 'node:events'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { freePort } from './memcached.js'

export interface EtcdServer {
  readonly endpoint: string
  readonly pid: number
  readonly running: boolean
  poolUrl(prefix: string): string
  output(): string
  /** SIGKILL by PID (data kept). */
  kill(): Promise<void>
  /** Starts again on the same ports and data directory. */
  start(): Promise<void>
  /** Kills it and deletes its data directory. */
  remove(): Promise<void>
}

const running = new Set<ChildProcess>()
let hooked = false

function findEtcd(): string {
  const found = spawnSync('sh', ['-c', 'command -v etcd'], { encoding: 'utf8' })
  const p = (found.stdout ?? '').trim()
  if (found.status !== 0 || p === '') {
    throw new Error('etcd is not installed (not on PATH): run scripts/setup.sh (it installs the Debian package etcd-server) to run these tests.')
  }
  return p
}

function killChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return Promise.resolve()
  child.ref() // waiting for its exit must keep the test process alive
  const exited = once(child, 'exit').then(() => undefined)
  try {
    process.kill(child.pid, 'SIGKILL')
  } catch {
    return Promise.resolve()
  }
  return exited
}

async function ready(endpoint: string, child: ChildProcess, out: () => string): Promise<boolean> {
  const deadline = Date.now() + 15_000
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) return false
    try {
      const r = await fetch(`http://${endpoint}/v3/kv/range`, { method: 'POST', body: JSON.stringify({ key: 'AA==' }), signal: AbortSignal.timeout(1000) })
      if (r.ok) return true
    } catch {
      // not yet
    }
    await sleep(50)
  }
  await killChild(child)
  throw new Error(`etcd on ${endpoint} did not answer within 15 s. Output:\n${out()}`)
}

export async function startEtcd(): Promise<EtcdServer> {
  const bin = findEtcd()
  if (!hooked) {
    hooked = true
    process.on('exit', () => {
      for (const c of running) if (c.pid !== undefined && c.exitCode === null) try { process.kill(c.pid, 'SIGKILL') } catch { /* gone */ }
    })
  }
  const dir = mkdtempSync(path.join(tmpdir(), 'memdrain-etcd-'))
  let child: ChildProcess | undefined
  let output = ''
  let clientPort = 0
  let peerPort = 0
  const launch = async (): Promise<boolean> => {
    const client = `http://127.0.0.1:${clientPort}`
    const peer = `http://127.0.0.1:${peerPort}`
    output = ''
    const c = spawn(
      bin,
      ['--name', 'test', '--data-dir', path.join(dir, 'data'), '--listen-client-urls', client, '--advertise-client-urls', client,
        '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer, '--initial-cluster', `test=${peer}`, '--log-level', 'warn'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    )
    const collect = (d: Buffer): void => {
      output = (output + d.toString()).slice(-16_384)
    }
    c.stdout?.on('data', collect)
    c.stderr?.on('data', collect)
    c.unref()
    running.add(c)
    c.once('exit', () => running.delete(c))
    child = c
    return ready(`127.0.0.1:${clientPort}`, c, () => output)
  }
  for (let attempt = 0; ; attempt++) {
    clientPort = await freePort()
    peerPort = await freePort()
    if (await launch()) break
    if (attempt >= 4) throw new Error(`etcd could not start. Output:\n${output}`)
  }
  const server: EtcdServer = {
    get endpoint() {
      return `127.0.0.1:${clientPort}`
    },
    get pid() {
      return child!.pid!
    },
    get running() {
      return child !== undefined && child.exitCode === null && child.signalCode === null
    },
    poolUrl: (prefix) => `etcd://127.0.0.1:${clientPort}${prefix.startsWith('/') ? prefix : `/${prefix}`}`,
    output: () => output,
    kill: () => killChild(child!),
    start: async () => {
      for (let attempt = 0; attempt < 20; attempt++) {
        if (await launch()) return
        await sleep(200)
      }
      throw new Error(`etcd could not start again on port ${clientPort}. Output:\n${output}`)
    },
    remove: async () => {
      await killChild(child!)
      rmSync(dir, { recursive: true, force: true })
    },
  }
  return server
}
