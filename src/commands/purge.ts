import { Args, Flags } from '@oclif/core'
import { BaseCommand, EXIT_CODES_HELP, poolFlags, poolStoreFromFlags, usageError } from '../cli/base-command.js'
import { confirm } from '../cli/confirm.js'
import { purgeServer, type PurgeResult } from '../core/pool/purge.js'

export default class Purge extends BaseCommand<PurgeResult> {
  static override summary = 'Flush one drained server (that server only) and mark it removed.'
  static override description = `Refuses an active server, or a drain below its threshold, unless --force. Never touches another server.

${EXIT_CODES_HELP}`
  static override examples = ['<%= config.bin %> purge 10.0.0.3:11211 --yes', '<%= config.bin %> purge 10.0.0.3:11211 --force --yes --json']
  static override args = { server: Args.string({ description: 'Server address (host:port as in the pool) or name.', required: true, ignoreStdin: true }) }
  static override flags = {
    pool: poolFlags.pool,
    'auth-file': poolFlags['auth-file'],
    force: Flags.boolean({ description: 'Purge even an active server or a drain below its threshold.' }),
    yes: Flags.boolean({ char: 'y', description: 'Do not ask for confirmation (required without a terminal).' }),
  }

  async run(): Promise<PurgeResult> {
    const { args, flags } = await this.parse(Purge)
    if (!(await confirm(`Flush every item on ${args.server}?`, flags.yes))) throw usageError('not confirmed; nothing was changed')
    const result = await purgeServer(poolStoreFromFlags(flags, (m) => this.note(m)), args.server, flags.force)
    if (!this.jsonEnabled()) this.log(`${result.server} flushed and marked removed`)
    return result
  }
}
