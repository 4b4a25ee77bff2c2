import { Args } from '@oclif/core'
import { EXIT_CODES_HELP, poolFlags, poolStoreFromFlags, usageError } from '../cli/base-command.js'
import { confirm } from '../cli/confirm.js'
import { JobCommand } from '../cli/job-command.js'
import { switchFlags, switchWaiter } from '../cli/switch-flags.js'
import { handoffFlags, handoffJobOptions, throttleFlags } from '../cli/job-flags.js'
import type { DrainResult } from '../core/jobs/drain.js'
import { renderDrainSummary } from '../ui/drain-summary.js'

export default class Drain extends JobCommand<DrainResult> {
  static override summary = 'Move every live key off a server to its new owners, then purge it and mark it removed.'
  static override description = `Marks SERVER deactivating in the pool file, dumps its keys (lru_crawler metadump) into a spool on
disk, and moves each key to its owner(s) under the pool without SERVER — value, client flags and
remaining TTL kept — with add (a newer value at the destination is never overwritten) and a
CAS-checked delete at the source. Throttled (--rate, --bandwidth) and guarded (destinations that
start evicting slow the job down; one short of --min-free gets nothing more). Dumps again until
nothing is left. At --threshold it flushes SERVER (that server only) and marks it removed.

Which servers hand over keys follows from the placement: with a ring (ketama, rendezvous) only
SERVER's keys change owner; with a modulo placement (memjs, php-memcached's default, pylibmc
without behaviors, …: \`memdrain hashes\` says which) removing SERVER changes the owner of most keys
on the servers that stay too, so every server is read and each key whose owner changes moves. The
first lines (and \`memdrain plan SERVER\`) say which and how many.

Hand-offs: --handoff move (default when the pool says "clients": "pool-aware") deletes each key
from SERVER as it moves; --handoff copy (default otherwise) copies, waits for the applications to
switch (--switch-command, --wait-for-switch, or Enter on a terminal), then catches up and purges.

Interrupted (Ctrl-C, SIGTERM) or below the threshold, the record stays in the pool file: run the
same command again to resume.

${EXIT_CODES_HELP}`
  static override examples = [
    '<%= config.bin %> drain 10.0.0.3:11211 --yes',
    '<%= config.bin %> drain 10.0.0.3:11211 --handoff copy --switch-command "./deploy-new-config.sh" --yes',
    '<%= config.bin %> drain 10.0.0.3:11211 --rate 5000 --bandwidth 20MB --threshold 0.99 --yes --json',
    '<%= config.bin %> drain 10.0.0.3:11211 --dry-run',
  ]
  static override args = { server: Args.string({ description: 'The server to drain (host:port as in the pool, or its name).', required: true, ignoreStdin: true }) }
  static override flags = {
    ...poolFlags,
    ...throttleFlags,
    ...handoffFlags('the drained server is'),
    ...switchFlags,
  }

  async run(): Promise<DrainResult> {
    const { args, flags } = await this.parse(Drain)
    const job = handoffJobOptions(flags)
    const store = poolStoreFromFlags(flags, (m) => this.note(m))
    const { dryRun } = job
    if (flags['switch-command'] !== undefined && flags['wait-for-switch']) throw usageError('give --switch-command or --wait-for-switch, not both')
    if (!dryRun && !(await confirm(`Drain ${args.server}: move its keys to the other servers, then flush it?`, flags.yes))) {
      throw usageError('not confirmed; nothing was changed')
    }
    const { runDrain } = await import('../core/jobs/drain.js')
    return this.runJob({
      job: 'drain',
      label: `drain ${args.server}`,
      flags,
      render: (r) => renderDrainSummary(r, job.rate),
      start: async ({ signal, onEvent }) => {
        const waiter = await switchWaiter(
          flags,
          signal,
          (ctx) => `All keys are copied. Switch the applications to the server list without ${ctx.watched.join(', ')}, then press Enter to catch up and purge.`,
          async () => (await store.load()).pool,
        )
        const waitForSwitch = waiter === undefined ? undefined : (ctx: { source: string; sources: string[]; destinations: string[] }) => waiter({ watched: [ctx.source], sources: ctx.sources, destinations: ctx.destinations })
        return runDrain({ store, server: args.server, ...job, signal, onEvent, waitForSwitch })
      },
    })
  }
}
