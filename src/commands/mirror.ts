import { Args, Flags } from '@oclif/core'
import { existsSync } from 'node:fs'
import { BaseCommand, EXIT_CODES_HELP, poolFlags, poolStoreFromFlags, usageError } from '../cli/base-command.js'
import { confirm } from '../cli/confirm.js'
import { interruptOnSignals, metricsFlags, parseJobFlags, throttleFlags } from '../cli/job-flags.js'
import { startJobReport } from '../cli/job-report.js'
import type { MirrorResult } from '../core/jobs/mirror.js'
import { DEFAULT_POOL_FILE } from '../core/pool/resolve.js'
import { renderMirrorPass, renderMirrorSummary } from '../ui/job-summary.js'

export default class Mirror extends BaseCommand<MirrorResult> {
  static override summary = 'Keep a passive server a hot copy of an active one (active/passive failover).'
  static override description = `A first full copy of ACTIVE to PASSIVE (set: the active's value wins), then a pass every
--interval that copies what is new or changed on ACTIVE since the last pass (by CAS) and, with
--delete, deletes on PASSIVE what ACTIVE no longer has. Values, client flags and remaining TTLs
are kept. Runs until Ctrl-C or SIGTERM (exit 0); --once does one pass.

Each pass reports the keys copied and the lag: from the start of the previous pass's dump to the
end of this pass, the longest a change on ACTIVE can have waited to reach PASSIVE.

PASSIVE must not be a server the pool lists as active or deactivating (applications would read
it); ACTIVE need not be in the pool. The pool is checked when one is given or ./memdrain.json
exists. The passive's free memory is guarded like any destination (--min-free) and new evictions
there are reported.

${EXIT_CODES_HELP}`
  static override examples = [
    '<%= config.bin %> mirror 10.0.0.1:11211 10.0.1.1:11211 --yes',
    '<%= config.bin %> mirror 10.0.0.1:11211 10.0.1.1:11211 --interval 2 --delete --rate 0 --yes',
    '<%= config.bin %> mirror 10.0.0.1:11211 10.0.1.1:11211 --once --json --yes',
  ]
  static override args = {
    active: Args.string({ description: 'The server applications use (host:port).', required: true, ignoreStdin: true }),
    passive: Args.string({ description: 'The standby server to keep in step (host:port); never read by applications.', required: true, ignoreStdin: true }),
  }
  static override flags = {
    ...poolFlags,
    ...throttleFlags,
    interval: Flags.string({ description: 'Seconds from the start of one pass to the start of the next.', default: '5' }),
    once: Flags.boolean({ description: 'One pass (the full copy), then exit.' }),
    delete: Flags.boolean({ description: 'Delete on the passive the keys the active no longer has.' }),
    yes: Flags.boolean({ char: 'y', description: 'Do not ask for confirmation (required without a terminal).' }),
    ...metricsFlags,
  }

  async run(): Promise<MirrorResult> {
    const { args, flags } = await this.parse(Mirror)
    const knobs = parseJobFlags(flags)
    const interval = Number(flags.interval)
    if (flags.interval.trim() === '' || !Number.isFinite(interval) || interval <= 0) throw usageError(`--interval must be a number of seconds > 0, got "${flags.interval}"`)
    const { checkMirrorPool, runMirror } = await import('../core/jobs/mirror.js')
    // The pool only serves the check that the passive is not a server applications read.
    const explicit = flags.pool !== undefined || flags.servers !== undefined || process.env.MEMDRAIN_POOL !== undefined
    const store = explicit || existsSync(DEFAULT_POOL_FILE) ? poolStoreFromFlags(flags) : undefined
    checkMirrorPool(store === undefined ? undefined : (await store.load()).pool, store?.location ?? '', args.active, args.passive)
    const what = `Mirror ${args.active} to ${args.passive}: overwrite keys on ${args.passive}${flags.delete ? ' and delete those the active lacks' : ''}?`
    if (!(await confirm(what, flags.yes))) throw usageError('not confirmed; nothing was changed')
    const json = this.jsonEnabled()
    const report = await startJobReport({ job: 'mirror', label: `mirror ${args.active} → ${args.passive}`, json, flags, onWarning: (m) => this.note(m) })
    this.stderrLine = (line) => report.log(line)
    const interrupt = interruptOnSignals(report)
    let firstDone = false
    let quietSince = Date.now()
    try {
      const result = await runMirror({
        active: args.active,
        passive: args.passive,
        intervalSeconds: interval,
        once: flags.once,
        delete: flags.delete,
        ...knobs,
        signal: interrupt.signal,
        onEvent: (e) => {
          report.event(e)
          if (e.type === 'mirror-evictions') {
            this.note(`${e.passive} evicted ${e.evictions} item(s) since the mirror started: give it more memory (it must hold everything the active holds)`)
            return
          }
          if (e.type === 'mirror-passive-down') {
            this.note(`the passive ${e.passive} went away (${e.message}): waiting for it to answer again, then copying everything`)
            return
          }
          if (e.type === 'mirror-passive-back') {
            this.note(`the passive ${e.passive} answers again: copying everything`)
            return
          }
          if (e.type === 'mirror-pass') {
            // After the full copy, one line per pass rather than bars.
            if (!firstDone) report.stopDrawing()
            firstDone = true
            // One line per pass that did something, and one a minute otherwise.
            const busy = e.result.copied + e.result.deleted + e.result.failed > 0
            if (!json && (busy || Date.now() - quietSince > 60_000)) {
              quietSince = Date.now()
              this.info(renderMirrorPass(e.result))
            }
          }
        },
      })
      await report.finish(result.status)
      this.status = result.status
      if (!json) this.log(renderMirrorSummary(result))
      return result
    } finally {
      await report.finish('failed')
      interrupt.dispose()
    }
  }
}
