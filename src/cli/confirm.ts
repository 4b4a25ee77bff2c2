import { createInterface } from 'node:readline/promises'
import { ExitCode, MemdrainError } from '../core/errors.js'
import { usageError } from './base-command.js'

/**
 * Ctrl-C (or SIGTERM) while a prompt waits is an interruption like any other: exit 69 with the
 * state saved, never a stack trace. On a terminal readline reads Ctrl-C as a key, not a signal,
 * so the prompt listens for it itself.
 */
function interruptedAtPrompt(what: string): MemdrainError {
  return new MemdrainError(`interrupted at the prompt; ${what}`, {
    code: 'INTERRUPTED',
    exitCode: ExitCode.interrupted,
    suggestions: ['Run the same command again to resume.'],
  })
}

async function ask(question: string, whenInterrupted: string, signal?: AbortSignal): Promise<string> {
  const rl = createInterface({ input: process.stdin, output: process.stderr })
  const ac = new AbortController()
  rl.on('SIGINT', () => ac.abort())
  const onSignal = (): void => ac.abort()
  signal?.addEventListener('abort', onSignal, { once: true })
  try {
    if (signal?.aborted === true) throw interruptedAtPrompt(whenInterrupted)
    return await rl.question(question, { signal: ac.signal })
  } catch (err) {
    if (ac.signal.aborted) {
      process.stderr.write('\n')
      throw interruptedAtPrompt(whenInterrupted)
    }
    throw err
  } finally {
    signal?.removeEventListener('abort', onSignal)
    rl.close()
  }
}

/** Asks on the terminal; without one, the caller must have passed --yes. */
export async function confirm(question: string, yes: boolean): Promise<boolean> {
  if (yes) return true
  if (!process.stdin.isTTY || !process.stderr.isTTY) {
    throw usageError('this would change the pool and there is no terminal to confirm on', ['Pass --yes to confirm non-interactively.'])
  }
  const answer = await ask(`${question} [y/N] `, 'nothing was changed')
  return /^y(es)?$/i.test(answer.trim())
}

/** The copy hand-off's "press Enter": Ctrl-C or a signal leaves the job resumable (exit 69). */
export async function waitForEnter(message: string, signal?: AbortSignal): Promise<void> {
  await ask(`${message} `, 'the keys copied so far are kept and the switch was not made', signal)
}
