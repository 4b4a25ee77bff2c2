import { Args, Flags } from '@oclif/core'
import { BaseCommand, EXIT_CODES_HELP, poolFlags, poolStoreFromFlags } from '../cli/base-command.js'
import { confirm } from '../cli/confirm.js'
import { markServer, type MarkResult } from '../core/pool/mark.js'
import { SERVER_STATES } from '../core/pool/model.js'

export default class Mark extends BaseCommand<MarkResult> {
  static override summary = 'Set a server\'s state in the pool file: active, deactivating or removed.'
  static override description = `Pool-aware applications (memdrain's library) place keys as if a deactivating server were gone and
move what they read from it. Marking does not move or delete any key; \`memdrain drain\` does both.
Marking a server active again clears its transition record. Marking a server that still holds keys
removed makes them unreachable: it says how many and asks (or needs --yes).

${EXIT_CODES_HELP}`
  static override examples = ['<%= config.bin %> mark 10.0.0.3:11211 deactivating', '<%= config.bin %> mark 10.0.0.3:11211 active --json']
  static override args = {
    server: Args.string({ description: 'Server address (host:port as in the pool) or name.', required: true, ignoreStdin: true }),
    state: Args.string({ description: 'New state.', required: true, options: [...SERVER_STATES], ignoreStdin: true }),
  }
  static override flags = {
    pool: poolFlags.pool,
    yes: Flags.boolean({ char: 'y', description: 'Mark a server that still holds keys removed without asking (they become unreachable).' }),
  }

  async run(): Promise<MarkResult> {
    const { args, flags } = await this.parse(Mark)
    const { itemCount } = await import('../core/inspect/server-status.js')
    const result = await markServer(poolStoreFromFlags(flags, (m) => this.note(m)), args.server, args.state as MarkResult['to'], {
      countKeys: itemCount,
      confirmUnreachable: (keys, server) => confirm(`${server} holds ${keys} key(s); marked removed, no client reads them again and nothing moves them. Mark it removed?`, flags.yes),
    })
    if (!this.jsonEnabled()) {
      const lost = typeof result.unreachableKeys === 'number' && result.unreachableKeys > 0 ? ` (${result.unreachableKeys} key(s) on it are now unreachable)` : result.unreachableKeys === null ? ' (it did not answer: its keys, if any, are unreachable)' : ''
      this.log(`${result.server}: ${result.from} → ${result.to}${lost}`)
    }
    return result
  }
}
