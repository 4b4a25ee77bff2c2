import { Args, Flags } from '@oclif/core'
import { BaseCommand, EXIT_CODES_HELP, poolFlags, poolStoreFromFlags } from '../cli/base-command.js'
import { interruptOnSignals, parseJobFlags, throttleFlags } from '../cli/job-flags.js'
import type { DrainPlan } from '../core/jobs/drain.js'
import { renderPlan } from '../ui/plan-summary.js'
import { paint } from '../ui/style.js'

export default class Plan extends BaseCommand<DrainPlan> {
  static override summary = 'Plan a drain without changing anything: which servers hand over keys, keys and bytes per destination, room, estimated duration.'
  static override description = `Dumps every server that would hand over keys if SERVER left the pool (SERVER alone for a consistent
placement such as a ketama ring; every server for a modulo one, where removing a server changes the
owner of most keys on the servers that stay) and routes each key to its owner(s) under the pool
without SERVER. Writes nothing and takes no lock. The same planning as \`rebalance --dry-run\`.

The estimate is at --rate; with the copy hand-off it includes the catch-up after the switch, which
reads every copied key once more at the same rate.

${EXIT_CODES_HELP}`
  static override examples = ['<%= config.bin %> plan 10.0.0.3:11211', '<%= config.bin %> plan 10.0.0.3:11211 --rate 5000 --json', '<%= config.bin %> plan 10.0.0.3:11211 --handoff copy']
  static override args = { server: Args.string({ description: 'The server to plan the drain of (host:port as in the pool, or its name).', required: true, ignoreStdin: true }) }
  static override flags = {
    ...poolFlags,
    ...throttleFlags,
    handoff: Flags.string({ description: 'The hand-off to plan for (default: move for a pool-aware pool, copy otherwise).', options: ['move', 'copy'] }),
  }

  async run(): Promise<DrainPlan> {
    const { args, flags } = await this.parse(Plan)
    const store = poolStoreFromFlags(flags, (m) => this.note(m))
    const { planDrain } = await import('../core/jobs/drain.js')
    const interrupt = interruptOnSignals()
    try {
      const plan = await planDrain({ store, server: args.server, ...parseJobFlags(flags), handoff: flags.handoff as 'move' | 'copy' | undefined, signal: interrupt.signal })
      this.status = plan.status
      if (!this.jsonEnabled()) this.log([paint.bold(`Plan: drain ${plan.server} (${plan.handoff} hand-off)`), ...renderPlan(plan, plan.rate)].join('\n'))
      return plan
    } finally {
      interrupt.dispose()
    }
  }
}
