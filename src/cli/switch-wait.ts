import { spawn } from 'node:child_process'
import { setTimeout as sleep } from 'node:timers/promises'
import { MemdrainError, ExitCode } from '../core/errors.js'
import { MetaConnection, parseAddress } from '../core/protocol/index.js'

/** Ways the copy hand-off learns that applications now read the new owners. */

/**
 * Runs the switch command. SIGINT/SIGTERM received meanwhile (`signal`) is passed on to the
 * command (SIGTERM), as is the end of `timeoutSeconds`; either way the promise rejects only once
 * the command has exited, with `maybeSwitched` set: a command stopped half-way may have switched
 * some applications already, so the caller must catch up before it exits.
 */
export function runSwitchCommand(command: string, env: Record<string, string>, opts: { signal?: AbortSignal | undefined; timeoutSeconds?: number | undefined } = {}): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, { shell: true, stdio: ['ignore', process.stderr, process.stderr], env: { ...process.env, ...env }, detached: true })
    let stoppedBy: 'interrupt' | 'timeout' | undefined
    // The shell and what it started form one process group: the signal reaches the command itself.
    const stop = (why: 'interrupt' | 'timeout'): void => {
      if (stoppedBy !== undefined || child.exitCode !== null) return
      stoppedBy = why
      try {
        process.kill(-child.pid!, 'SIGTERM')
      } catch {
        child.kill('SIGTERM')
      }
      // A command that ignores SIGTERM: SIGKILL 10 s later, the wait stays bounded.
      setTimeout(() => {
        try {
          if (child.exitCode === null) process.kill(-child.pid!, 'SIGKILL')
        } catch {
          // Gone already.
        }
      }, 10_000).unref()
    }
    const onAbort = (): void => stop('interrupt')
    if (opts.signal?.aborted) queueMicrotask(onAbort)
    opts.signal?.addEventListener('abort', onAbort, { once: true })
    const timer = opts.timeoutSeconds !== undefined ? setTimeout(() => stop('timeout'), opts.timeoutSeconds * 1000) : undefined
    const done = (): void => {
      opts.signal?.removeEventListener('abort', onAbort)
      if (timer !== undefined) clearTimeout(timer)
    }
    child.on('error', (err) => {
      done()
      reject(switchFailed(command, err.message, false))
    })
    child.on('exit', (code, sig) => {
      done()
      if (stoppedBy === 'interrupt') reject(switchInterrupted(command))
      else if (stoppedBy === 'timeout') reject(switchFailed(command, `still running after --switch-timeout ${opts.timeoutSeconds} s, stopped`, true, 'SWITCH_TIMEOUT'))
      else if (code === 0) resolve()
      else reject(switchFailed(command, sig !== null ? `killed by ${sig}` : `exit code ${code}`, true))
    })
  })
}

/** A switch that did not complete; data.maybeSwitched: some applications may read the new servers already (the runner catches up). */
function switchFailed(command: string, why: string, maybeSwitched: boolean, code: 'SWITCH_FAILED' | 'SWITCH_TIMEOUT' = 'SWITCH_FAILED'): MemdrainError {
  return new MemdrainError(
    `the switch command \`${command}\` failed (${why}); the source was not purged${maybeSwitched ? ', and the copies were caught up in case some applications switched' : ''}`,
    {
      code,
      exitCode: ExitCode.partial,
      suggestions: ['Fix the command and run the same memdrain command again soon: it resumes, refreshes what changed and then switches.'],
      data: { maybeSwitched },
    },
  )
}

function switchInterrupted(command: string): MemdrainError {
  return new MemdrainError(
    `interrupted during the switch command \`${command}\` (stopped with SIGTERM): some applications may read the new servers already; the copies were caught up, nothing was purged`,
    {
      code: 'INTERRUPTED',
      exitCode: ExitCode.interrupted,
      suggestions: ['Run the same memdrain command again soon: it resumes, refreshes what changed and runs the switch command again.'],
      data: { maybeSwitched: true },
    },
  )
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
    suggestions: ['Deploy the new server list to the applications, then run the same memdrain command again (it resumes).'],
  })
}
