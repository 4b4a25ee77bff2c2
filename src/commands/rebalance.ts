import { Flags } from '@oclif/core'
import { EXIT_CODES_HELP, poolFlags, poolStoreFromFlags, usageError } from '../cli/base-command.js'
import { confirm } from '../cli/confirm.js'
import { JobCommand } from '../cli/job-command.js'
import { handoffFlags, handoffJobOptions, throttleFlags } from '../cli/job-flags.js'
import { switchFlags, switchWaiter } from '../cli/switch-flags.js'
import type { AbortResult, RebalanceResult } from '../core/jobs/rebalance.js'
import { renderAbortSummary, renderRebalanceSummary } from '../ui/rebalance-summary.js'

export default class Rebalance extends JobCommand<RebalanceResult | AbortResult> {
  static override summary = 'Move the keys whose owner changes after adding, removing or reweighting servers.'
  static override description = `The new pool is --to NEW_POOL_FILE, or the current one with --add, --remove and --weight.
Every server of the current pool is a source, all at once under one --rate and --bandwidth; each
key whose owner (or chain, with replicas) under the new pool does not include the server holding
it goes to its new owner(s) with add (a newer value there is never overwritten). Keys that stay are
not read. The pool file becomes the new pool at the start, with servers that leave "deactivating"
and the previous pool kept in a "rebalance" record.

Hand-offs: --handoff move (default when the pool says "clients": "pool-aware": those clients read
a key's new owner, then its previous one) deletes each key from its old owner as it moves;
--handoff copy (default otherwise) copies, waits for the applications to switch
(--switch-command, --wait-for-switch, or Enter on a terminal), catches up, deletes the copies left
on servers that stay, then purges the servers that leave.

--dry-run prints the plan only (keys and bytes per old owner → new owner, from the dumps).
--abort restores the previous pool before the switch (copy hand-off). Interrupted, or below the
threshold: run the same command again to resume.

${EXIT_CODES_HELP}`
  static override examples = [
    '<%= config.bin %> rebalance --add 10.0.0.4:11211 --dry-run',
    '<%= config.bin %> rebalance --add 10.0.0.4:11211 --handoff move --yes',
    '<%= config.bin %> rebalance --remove 10.0.0.2:11211 --switch-command "./deploy-new-config.sh" --yes --json',
    '<%= config.bin %> rebalance --to new-pool.json --rate 5000 --yes',
    '<%= config.bin %> rebalance --weight 10.0.0.1:11211=2 --yes',
    '<%= config.bin %> rebalance --abort',
  ]
  static override flags = {
    ...poolFlags,
    ...throttleFlags,
    to: Flags.string({ description: 'The new pool, as a pool file (its servers in the order the applications will use).', helpGroup: 'NEW POOL' }),
    add: Flags.string({ description: 'Add a server (ADDR or ADDR=WEIGHT); repeatable.', multiple: true, helpGroup: 'NEW POOL' }),
    remove: Flags.string({ description: 'Remove a server (ADDR); repeatable.', multiple: true, helpGroup: 'NEW POOL' }),
    weight: Flags.string({ description: 'Change a server\'s weight (ADDR=WEIGHT); repeatable.', multiple: true, helpGroup: 'NEW POOL' }),
    abort: Flags.boolean({ description: 'Go back to the previous pool (copy hand-off, before the switch): deletes the copies made.', exclusive: ['to', 'add', 'remove', 'weight', 'dry-run'] }),
    ...handoffFlags('the servers leaving the pool are'),
    ...switchFlags,
  }

  async run(): Promise<RebalanceResult | AbortResult> {
    const { flags } = await this.parse(Rebalance)
    const store = poolStoreFromFlags(flags)
    if (flags.abort) {
      if (!(await confirm('Abort the rebalance: delete the copies it made and restore the previous pool?', flags.yes))) throw usageError('not confirmed; nothing was changed')
      const { abortRebalance } = await import('../core/jobs/rebalance.js')
      return this.runJob<AbortResult>({ job: 'rebalance', label: 'rebalance --abort', flags, progress: false, render: renderAbortSummary, start: ({ signal }) => abortRebalance(store, flags['spool-dir'], signal) })
    }
    const job = handoffJobOptions(flags)
    const { dryRun } = job
    if (flags['switch-command'] !== undefined && flags['wait-for-switch']) throw usageError('give --switch-command or --wait-for-switch, not both')
    const onlyAdds = ((flags.add ?? []).length > 0 || (flags.weight ?? []).length > 0) && (flags.remove ?? []).length === 0 && flags.to === undefined
    if (flags['wait-for-switch'] && onlyAdds) {
      throw usageError('--wait-for-switch watches the get rate of the servers that leave, and none does', ['Use --switch-command CMD, or confirm on a terminal.'])
    }
    let to: { pool: import('../core/pool/model.js').Pool; location: string } | undefined
    if (flags.to !== undefined) {
      const { FilePoolStore } = await import('../core/pool/store.js')
      const s = new FilePoolStore(flags.to)
      to = { pool: (await s.load()).pool, location: s.location }
    }
    const edits = { to, add: flags.add ?? [], remove: flags.remove ?? [], weight: flags.weight ?? [] }
    if (!dryRun && !(await confirm('Rebalance: move the keys whose owner changes to the new pool?', flags.yes))) throw usageError('not confirmed; nothing was changed')
    const { runRebalance } = await import('../core/jobs/rebalance.js')
    return this.runJob<RebalanceResult>({
      job: 'rebalance',
      label: 'rebalance',
      flags,
      render: (r) => renderRebalanceSummary(r, job.rate),
      start: async ({ signal, onEvent }) => {
        const waiter = await switchWaiter(
          flags,
          signal,
          (ctx) => `All keys are copied. Switch the applications to the new server list (${ctx.destinations.join(', ')}), then press Enter to catch up and purge.`,
          async () => (await store.load()).pool,
        )
        return runRebalance({
          store,
          edits,
          ...job,
          signal,
          onEvent,
          waitForSwitch:
            waiter === undefined
              ? undefined
              : (ctx) => {
                  if (flags['wait-for-switch'] && ctx.removed.length === 0) {
                    throw usageError('--wait-for-switch watches the get rate of the servers that leave, and none does', ['Run again with --switch-command CMD, or on a terminal to confirm by hand.'])
                  }
                  return waiter({ watched: ctx.removed, sources: ctx.sources, destinations: ctx.destinations })
                },
        })
      },
    })
  }
}
