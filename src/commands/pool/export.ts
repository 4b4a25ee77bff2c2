import { Flags } from '@oclif/core'
import { BaseCommand, EXIT_CODES_HELP, poolFlags, poolStoreFromFlags } from '../../cli/base-command.js'
import { EXPORT_FORMATS, type ExportFormat } from '../../core/pool/model.js'

export interface ExportResult {
  to: ExportFormat
  /** The config text, exactly as printed. */
  config: string
  template?: string
  poolName?: string
}

export default class PoolExport extends BaseCommand<ExportResult> {
  static override summary = "Print the pool's active servers as a twemproxy or mcrouter config, or as a server list."
  static override description = `Prints the servers that own keys (state "active", in pool order) in the format the applications
or their proxy read:

  twemproxy  a nutcracker.yml pool: hash, distribution and "host:port:weight [name]" servers. With
             --template FILE (default: the file the pool was imported from) the whole file is
             printed with only that pool's servers (and hash/distribution, if they differ) changed:
             listen, timeouts, other pools and comments stay.
  mcrouter   a config with the pool and a PoolRoute; with a template, only the pool's servers
             (and WeightedCh3 weights) change, and each server keeps its protocol suffix.
  servers    host:port[=weight],… in pool order (memdrain's --servers syntax).

A pool mid-drain exports without the server being drained: that is the list to switch to.

${EXIT_CODES_HELP}`
  static override examples = [
    '<%= config.bin %> pool export --to twemproxy --template /etc/nutcracker/nutcracker.yml > nutcracker.yml.new',
    '<%= config.bin %> pool export --to mcrouter --pool-name main',
    '<%= config.bin %> pool export --to servers',
  ]
  static override flags = {
    pool: poolFlags.pool,
    to: Flags.string({ description: 'Output format.', options: [...EXPORT_FORMATS], required: true }),
    template: Flags.string({ description: 'A config whose other keys to keep (twemproxy, mcrouter). Default: the file the pool was imported from.' }),
    'pool-name': Flags.string({ description: "The pool's name in the config (default: the imported pool's name, else memdrain)." }),
  }

  async run(): Promise<ExportResult> {
    const { flags } = await this.parse(PoolExport)
    const { exportConfig } = await import('../../core/pool/config/index.js')
    const { pool } = await poolStoreFromFlags(flags).load()
    const to = flags.to as ExportFormat
    const out = await exportConfig(pool, to, { poolName: flags['pool-name'], template: flags.template })
    if (!this.jsonEnabled()) process.stdout.write(out.text)
    return { to, config: out.text, ...(out.template !== undefined ? { template: out.template } : {}), ...(out.poolName !== undefined ? { poolName: out.poolName } : {}) }
  }
}
