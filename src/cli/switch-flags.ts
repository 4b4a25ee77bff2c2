import { Flags } from '@oclif/core'
import { waitForEnter } from './confirm.js'

/** How the copy hand-off learns that applications use the new server list (drain, rebalance). */
export const switchFlags = {
  'switch-command': Flags.string({ description: 'Copy hand-off: shell command that switches the applications to the new server list (must exit 0).', helpGroup: 'COPY HAND-OFF' }),
  'wait-for-switch': Flags.boolean({ description: 'Copy hand-off: wait until the get rate of the server(s) leaving stays under --switch-floor.', helpGroup: 'COPY HAND-OFF' }),
  'switch-floor': Flags.integer({ description: 'Gets per second under which a server counts as no longer read.', default: 1, min: 0, helpGroup: 'COPY HAND-OFF' }),
  'switch-timeout': Flags.integer({ description: 'Seconds to wait for the switch (the switch command is stopped with SIGTERM past it).', default: 3600, min: 1, helpGroup: 'COPY HAND-OFF' }),
}

export interface SwitchFlagValues {
  'switch-command'?: string | undefined
  'wait-for-switch': boolean
  'switch-floor': number
  'switch-timeout': number
}

/**
 * The wait for the switch: the switch command, the traffic watch on the servers that leave, or
 * Enter on a terminal; undefined when none applies (the core then refuses the copy hand-off).
 */
export async function switchWaiter(
  flags: SwitchFlagValues,
  signal: AbortSignal,
  prompt: (ctx: { watched: string[]; destinations: string[] }) => string,
): Promise<((ctx: { watched: string[]; destinations: string[] }) => Promise<void>) | undefined> {
  const { runSwitchCommand, waitForTrafficToStop } = await import('./switch-wait.js')
  const command = flags['switch-command']
  if (command !== undefined) {
    return (ctx) =>
      runSwitchCommand(command, { MEMDRAIN_SOURCE: ctx.watched.join(','), MEMDRAIN_DESTINATIONS: ctx.destinations.join(',') }, { signal, timeoutSeconds: flags['switch-timeout'] })
  }
  if (flags['wait-for-switch']) {
    return async (ctx) => {
      await Promise.all(
        ctx.watched.map((s) => waitForTrafficToStop(s, { floor: flags['switch-floor'], quietSeconds: 5, timeoutSeconds: flags['switch-timeout'], signal })),
      )
    }
  }
  if (process.stdin.isTTY && process.stderr.isTTY) return (ctx) => waitForEnter(prompt(ctx))
  return undefined
}
