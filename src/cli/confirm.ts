import { createInterface } from 'node:readline/promises'
import { usageError } from './base-command.js'

/** Asks on the terminal; without one, the caller must have passed --yes. */
export async function confirm(question: string, yes: boolean): Promise<boolean> {
  if (yes) return true
  if (!process.stdin.isTTY || !process.stderr.isTTY) {
    throw usageError('this would change the pool and there is no terminal to confirm on', ['Pass --yes to confirm non-interactively.'])
  }
  const rl = createInterface({ input: process.stdin, output: process.stderr })
  try {
    const answer = await rl.question(`${question} [y/N] `)
    return /^y(es)?$/i.test(answer.trim())
  } finally {
    rl.close()
  }
}

export async function waitForEnter(message: string): Promise<void> {
  const rl = createInterface({ input: process.stdin, output: process.stderr })
  try {
    await rl.question(`${message} `)
  } finally {
    rl.close()
  }
}
