import { Args, Flags } from '@oclif/core'
import { existsSync } from 'node:fs'
import { EXIT_CODES_HELP, poolFlags, poolStoreFromFlags, usageError } from '../cli/base-command.js'
import { confirm } from '../cli/confirm.js'
import { JobCommand } from '../cli/job-command.js'
import { parseJobFlags, throttleFlags } from '../cli/job-flags.js'
import type { MirrorResult } from '../core/jobs/mirror.js'
import { DEFAULT_POOL_FILE } from '../core/pool/resolve.js'
import { renderMirrorHeartbeat, renderMirrorPass, renderMirrorSummary } from '../ui/job-summary.js'

/** An idle mirror still says it is alive this often (stderr, also under --json; not with --quiet). */
const HEARTBEAT_MS = 60_000

export default class Mirror extends JobCommand<MirrorResult> {
  static override summary = 'Keep a passive server a hot copy of an active one (active/passive failover).'
  static override description = `A first full copy of ACTIVE to PASSIVE (set: the active's value wins), then a pass every
--interval that copies what is new or changed on ACTIVE since the last pass (by CAS) and, with
--delete, deletes on PASSIVE what ACTIVE no longer has. Values, client flags and remaining TTLs
are kept. Runs until Ctrl-C or SIGTERM (exit 0); --once does one pass.

Between passes the mirror follows ACTIVE's own stream of writes (memcached's \`watch mutations\`):
a key stored on ACTIVE reaches PASSIVE within milliseconds. The passes are the safety net for what
that stream does not carry (incr/decr, touch, deletions before memcached 1.6.20, events memcached
dropped under load); a reported loss starts the next pass at once.

Each pass that changes something reports the keys copied and the lag: from the start of the
previous pass's dump to the end of this pass, the longest a change on ACTIVE that the stream
missed can have waited. An idle mirror logs a heartbeat a minute (every pass with --verbose).

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
  }

  async run(): Promise<MirrorResult> {
    const { args, flags } = await this.parse(Mirror)
    const knobs = parseJobFlags(flags)
    const interval = Number(flags.interval)
    if (flags.interval.trim() === '' || !Number.isFinite(interval) || interval <= 0) throw usageError(`--interval must be a number of seconds > 0, got "${flags.interval}"`)
    const { checkMirrorPool, runMirror } = await import('../core/jobs/mirror.js')
    // The pool only serves the check that the passive is not a server applications read: the
    // mirror places no key, so --servers needs no --hash (any strategy validates the list).
    const explicit = flags.pool !== undefined || flags.servers !== undefined || process.env.MEMDRAIN_POOL !== undefined
    const poolSelection = flags.servers !== undefined && flags.hash === undefined ? { ...flags, hash: 'memjs' } : flags
    const store = explicit || existsSync(DEFAULT_POOL_FILE) ? poolStoreFromFlags(poolSelection) : undefined
    await checkMirrorPool(store === undefined ? undefined : (await store.load()).pool, store?.location ?? '', args.active, args.passive)
    const what = `Mirror ${args.active} to ${args.passive}: overwrite keys on ${args.passive}${flags.delete ? ' and delete those the active lacks' : ''}?`
    if (!(await confirm(what, flags.yes))) throw usageError('not confirmed; nothing was changed')
    const json = this.jsonEnabled()
    let firstDone = false
    let lastLine = Date.now()
    let lastLossNote = 0
    let idleSince = Date.now()
    return this.runJob({
      job: 'mirror',
      label: `mirror ${args.active} → ${args.passive}`,
      flags,
      render: renderMirrorSummary,
      start: ({ signal, onEvent, progress }) =>
        runMirror({
          active: args.active,
          passive: args.passive,
          intervalSeconds: interval,
          once: flags.once,
          delete: flags.delete,
          ...knobs,
          signal,
          onEvent: (e) => {
            // Every event feeds the job's figures (metrics); the bars stop after the first pass.
            onEvent(e)
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
            if (e.type === 'mirror-follow') {
              // A loss is routine under a write storm (the next pass starts at once): say it only once a minute.
              if (e.state !== 'lost' || Date.now() - lastLossNote > 60_000) this.note(e.message)
              if (e.state === 'lost') lastLossNote = Date.now()
              return
            }
            if (e.type === 'mirror-pass') {
              // The first pass (the full copy) is drawn as progress; then one line per pass that
              // changed something, and a heartbeat a minute while nothing changes.
              if (!firstDone) progress.stop()
              firstDone = true
              const busy = e.result.copied + e.result.deleted + e.result.failed > 0
              if (busy) idleSince = Date.now()
              if (busy && !json) this.info(renderMirrorPass(e.result))
              else if (this.verbosity === 'verbose' || Date.now() - lastLine >= HEARTBEAT_MS) this.info(renderMirrorHeartbeat(e.result, Date.now() - idleSince))
              else return
              lastLine = Date.now()
            }
          },
        }),
    })
  }
}
