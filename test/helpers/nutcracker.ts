/**
 * A real twemproxy (nutcracker 0.5) on a loopback port, for tests: started in the foreground from a
 * config file, stopped by PID (killed by PID when the test process exits).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { connect } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { freePort } from './memcached.js'

export interface Nutcracker {
  readonly address: string
  readonly pid: number
  stop(): Promise<void>
}

const started = new Set<ChildProcess>()
let hooked = false

/** Why nutcracker cannot run here, or undefined. */
export function nutcrackerMissing(): string | undefined {
  const r = spawnSync('nutcracker', ['-V'], { stdio: 'ignore', env: { ...process.env, PATH: `${process.env.PATH ?? ''}:/usr/sbin:/sbin` } })
  return r.status === 0 ? undefined : 'nutcracker is not installed (Debian: nutcracker)'
}

/** Starts nutcracker on `configFile`, whose pool listens on `listenPort`; resolves once that port accepts connections. */
export async function startNutcracker(configFile: string, listenPort: number, logFile: string): Promise<Nutcracker> {
  if (!hooked) {
    hooked = true
    process.on('exit', () => {
      for (const c of started) if (c.pid !== undefined && c.exitCode === null) process.kill(c.pid, 'SIGKILL')
    })
  }
  const statsPort = await freePort()
  const child = spawn('nutcracker', ['-c', configFile, '-s', String(statsPort), '-a', '127.0.0.1', '-o', logFile, '-p', `${logFile}.pid`], {
    stdio: 'ignore',
    env: { ...process.env, PATH: `${process.env.PATH ?? ''}:/usr/sbin:/sbin` },
  })
  child.unref()
  started.add(child)
  child.once('exit', () => started.delete(child))
  const deadline = Date.now() + 5000
  for (;;) {
    if (child.exitCode !== null) throw new Error(`nutcracker exited (${child.exitCode}); see ${logFile}`)
    const up = await new Promise<boolean>((resolve) => {
      const s = connect({ host: '127.0.0.1', port: listenPort }, () => {
        s.destroy()
        resolve(true)
      })
      s.once('error', () => resolve(false))
    })
    if (up) break
    if (Date.now() > deadline) throw new Error(`nutcracker did not listen on ${listenPort} within 5 s; see ${logFile}`)
    await sleep(20)
  }
  return {
    address: `127.0.0.1:${listenPort}`,
    pid: child.pid!,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return
      // The child is unref'd: hold the event loop until its exit is seen.
      child.ref()
      const exited = once(child, 'exit')
      process.kill(child.pid!, 'SIGKILL')
      await exited
    },
  }
}
