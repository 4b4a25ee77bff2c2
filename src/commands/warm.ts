import { Args, Flags } from '@oclif/core'
import { EXIT_CODES_HELP, poolFlags, poolStoreFromFlags } from '../cli/base-command.js'
import { JobCommand } from '../cli/job-command.js'
import { parseRatio, parseJobFlags, throttleFlags } from '../cli/job-flags.js'
import type { WarmResult } from '../core/jobs/warm.js'
import { renderWarmSummary } from '../ui/job-summary.js'

export default class Warm extends JobCommand<WarmResult> {
  static override summary = 'Restore a server that came back empty: copy its keys there from the peers that hold them.'
  static override description = `For each key whose replica chain includes SERVER (pool "replicas" > 1), or, with --from, whose
chain in a previous pool included it (a server that was replaced, or came back after the pool
moved its keys), copies the key to SERVER from the peer that holds it — value, client flags and
remaining TTL kept — with add: a value the application wrote there since the restart is never
overwritten. Peers are only read; SERVER is only written. Throttled and guarded like drain. The
pool file does not change; the job holds the pool lock while it runs.

Reports the restored ratio: (restored + already there) / keys that belong there and exist on a
peer. Below --threshold, or with failed keys or an unreachable peer: exit 68.

${EXIT_CODES_HELP}`
  static override examples = [
    '<%= config.bin %> warm 10.0.0.3:11211',
    '<%= config.bin %> warm 10.0.0.3:11211 --rate 0 --json',
    '<%= config.bin %> warm 10.0.0.9:11211 --from pool-before-failover.json',
  ]
  static override args = { server: Args.string({ description: 'The server to warm (host:port as in the pool, or its name).', required: true, ignoreStdin: true }) }
  static override flags = {
    ...poolFlags,
    ...throttleFlags,
    from: Flags.string({ description: 'Previous pool file: warm the keys whose chain in it included SERVER (a replaced server).' }),
    threshold: Flags.string({ description: 'Restored ratio under which the command exits 68.', default: '0.95' }),
  }

  async run(): Promise<WarmResult> {
    const { args, flags } = await this.parse(Warm)
    const knobs = parseJobFlags(flags)
    const threshold = parseRatio(flags.threshold, 'threshold')
    const store = poolStoreFromFlags(flags)
    const { resolvePoolStore } = await import('../core/pool/resolve.js')
    const from = flags.from === undefined ? undefined : resolvePoolStore({ pool: flags.from })
    const { runWarm } = await import('../core/jobs/warm.js')
    return this.runJob({
      job: 'warm',
      label: `warm ${args.server}`,
      flags,
      render: renderWarmSummary,
      start: ({ signal, onEvent }) =>
        runWarm({
          store,
          server: args.server,
          from,
          threshold,
          ...knobs,
          signal,
          onEvent: (e) => {
            if (e.type === 'peer-unreachable') this.note(`peer ${e.peer} skipped: ${e.message}`)
            else onEvent(e)
          },
        }),
    })
  }
}
