import { Flags } from '@oclif/core'
import { waitForEnter } from './confirm.js'
import type { Pool } from '../core/pool/model.js'

/** What the switch is about: servers that stop being read (watched), copied from, and copied to. */
export interface SwitchContext {
  watched: string[]
  sources: string[]
  destinations: string[]
}

/** How the copy hand-off learns that applications use the new server list (drain, rebalance). */
export const switchFlags = {
  'switch-command': Flags.string({
    description: `Copy hand-off: shell command that switches the applications to the new server list (must exit 0). Its environment: MEMDRAIN_NEW_POOL (a pool file of the new pool), MEMDRAIN_NEW_SERVERS (host:port[=weight],…), MEMDRAIN_NEW_CONFIG and MEMDRAIN_CONFIG_FORMAT (the twemproxy/mcrouter config for the new pool, when the pool was made by \`pool import\`), MEMDRAIN_SOURCE (servers copied from), MEMDRAIN_REMOVED (servers leaving; may be empty), MEMDRAIN_DESTINATIONS (servers copied to). Files last while the command runs.`,
    helpGroup: 'COPY HAND-OFF',
  }),
  'wait-for-switch': Flags.boolean({ description: 'Copy hand-off: wait until the servers leaving are no longer read (see --switch-floor).', helpGroup: 'COPY HAND-OFF' }),
  'switch-floor': Flags.integer({ description: 'Gets/s under which a server counts as no longer read.', default: 1, min: 0, helpGroup: 'COPY HAND-OFF' }),
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
  prompt: (ctx: SwitchContext) => string,
  loadPool: () => Promise<Pool>,
): Promise<((ctx: SwitchContext) => Promise<void>) | undefined> {
  const { runSwitchCommand, waitForTrafficToStop } = await import('./switch-wait.js')
  const command = flags['switch-command']
  if (command !== undefined) {
    return async (ctx) => {
      const { switchEnvironment } = await import('../core/pool/config/switch-env.js')
      // The pool as the job left it before the switch: its active servers are the new pool.
      const { env, cleanup } = await switchEnvironment({ sources: ctx.sources, removed: ctx.watched, destinations: ctx.destinations }, await loadPool())
      try {
        await runSwitchCommand(command, env, { signal, timeoutSeconds: flags['switch-timeout'] })
      } finally {
        await cleanup()
      }
    }
  }
  if (flags['wait-for-switch']) {
    return async (ctx) => {
      await Promise.all(
        ctx.watched.map((s) => waitForTrafficToStop(s, { floor: flags['switch-floor'], quietSeconds: 5, timeoutSeconds: flags['switch-timeout'], signal })),
      )
    }
  }
  if (process.stdin.isTTY && process.stderr.isTTY) return (ctx) => waitForEnter(prompt(ctx), signal)
  return undefined
}
