import { spawn } from 'node:child_process'
import { setTimeout as sleep } from 'node:timers/promises'
import { MemdrainError, ExitCode } from '../core/errors.js'
import { MetaConnection, parseAddress } from '../core/protocol/index.js'

/** Ways the copy hand-off learns that applications now read the new owners. */

export function runSwitchCommand(command: string, env: Record<string, string>): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, { shell: true, stdio: ['ignore', process.stderr, process.stderr], env: { ...process.env, ...env } })
    child.on('error', (err) => reject(switchFailed(command, err.message)))
    child.on('exit', (code, signal) => {
      if (code === 0) resolve()
      else reject(switchFailed(command, signal !== null ? `killed by ${signal}` : `exit code ${code}`))
    })
  })
}

function switchFailed(command: string, why: string): MemdrainError {
  return new MemdrainError(`the switch command \`${command}\` failed (${why}); the source was not purged`, {
    code: 'SWITCH_FAILED',
    exitCode: ExitCode.partial,
    suggestions: ['Fix the command and run the drain again: it resumes, re-copies what changed and then switches.'],
  })
}

/**
 * Watches the source's get rate (cmd_get per second) until it stays under `floor` for
 * `quietSeconds`: the applications have stopped reading it.
 */
export async function waitForTrafficToStop(source: string, opts: { floor: number; quietSeconds: number; timeoutSeconds: number; signal?: AbortSignal | undefined; onRate?: (rate: number) => void }): Promise<void> {
  const conn = await MetaConnection.connect(parseAddress(source))
  try {
    let last = Number((await conn.stats()).get('cmd_get') ?? 0)
    let quiet = 0
    const deadline = Date.now() + opts.timeoutSeconds * 1000
    while (Date.now() < deadline) {
      if (opts.signal?.aborted) throw new MemdrainError('interrupted while waiting for the switch', { code: 'INTERRUPTED', exitCode: ExitCode.interrupted })
      await sleep(1000)
      // Our own `stats` is not a get; nothing else of ours reads the source while waiting.
      const now = Number((await conn.stats()).get('cmd_get') ?? 0)
      const rate = now - last
      last = now
      opts.onRate?.(rate)
      quiet = rate < opts.floor ? quiet + 1 : 0
      if (quiet >= opts.quietSeconds) return
    }
  } finally {
    await conn.close().catch(() => undefined)
  }
  throw new MemdrainError(`${source} is still being read after ${opts.timeoutSeconds}s: applications have not switched`, {
    code: 'SWITCH_TIMEOUT',
    exitCode: ExitCode.partial,
    suggestions: ['Deploy the new server list to the applications, then run the drain again (it resumes).'],
  })
}
