import { spawn, execFileSync } from 'node:child_process'
import { createServer, connect } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { readFileSync } from 'node:fs'
import { MemdrainError, ExitCode } from '../errors.js'

/** Local memcached processes for `memdrain demo`: started detached, stopped only by the PIDs we recorded. */

export function findMemcachedBinary(): string {
  try {
    return execFileSync('sh', ['-c', 'command -v memcached'], { encoding: 'utf8' }).trim()
  } catch {
    throw new MemdrainError('no `memcached` binary on the PATH', {
      code: 'MEMCACHED_MISSING',
      exitCode: ExitCode.precondition,
      suggestions: ['Install it: `sudo apt-get install memcached` (or run `npm run demo`, which does).'],
    })
  }
}

export function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.unref()
    srv.on('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address()
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0
      srv.close(() => resolve(port))
    })
  })
}

function answersVersion(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect({ host: '127.0.0.1', port })
    let buf = ''
    const done = (ok: boolean): void => {
      sock.destroy()
      resolve(ok)
    }
    sock.setTimeout(500, () => done(false))
    sock.on('error', () => done(false))
    sock.on('connect', () => sock.write('version\r\n'))
    sock.on('data', (d) => {
      buf += d.toString('latin1')
      if (buf.includes('\r\n')) done(buf.startsWith('VERSION '))
    })
  })
}

export interface LaunchedMemcached {
  pid: number
  port: number
  address: string
}

export async function launchMemcached(opts: { memoryMb?: number; extraArgs?: string[] } = {}): Promise<LaunchedMemcached> {
  const bin = findMemcachedBinary()
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freeLoopbackPort()
    const args = ['-l', '127.0.0.1', '-p', String(port), '-U', '0', '-m', String(opts.memoryMb ?? 64), ...(opts.extraArgs ?? [])]
    if (process.getuid?.() === 0) args.unshift('-u', 'root')
    const child = spawn(bin, args, { detached: true, stdio: 'ignore' })
    child.unref()
    const pid = child.pid
    if (pid === undefined) continue
    for (let i = 0; i < 50; i++) {
      if (child.exitCode !== null) break
      if (await answersVersion(port)) return { pid, port, address: `127.0.0.1:${port}` }
      await sleep(100)
    }
    stopMemcachedPid(pid, port)
  }
  throw new MemdrainError('could not start a local memcached', { code: 'MEMCACHED_START_FAILED', exitCode: ExitCode.failed })
}

/** Stop a memcached we started, by PID, after checking the PID is still that memcached on that port. */
export function stopMemcachedPid(pid: number, port: number): boolean {
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')
    if (!cmdline[0]?.endsWith('memcached') || !cmdline.includes(String(port))) return false
  } catch {
    return false
  }
  try {
    process.kill(pid, 'SIGTERM')
    return true
  } catch {
    return false
  }
}
