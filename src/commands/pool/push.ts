import { Args } from '@oclif/core'
import { BaseCommand, EXIT_CODES_HELP, poolFlags, poolStoreFromFlags } from '../../cli/base-command.js'
import type { PushResult } from '../../core/pool/copy.js'
import { FilePoolStore } from '../../core/pool/store.js'

export default class PoolPush extends BaseCommand<PushResult> {
  static override summary = 'Store a pool file in the pool named by --pool (typically etcd://HOST:PORT/PREFIX).'
  static override description = `Reads and validates FILE, takes the target pool's lock (a job running on it refuses the push),
and stores the document there on the revision it read (a concurrent change is refused, never
overwritten). Credentials and TLS for etcd come from MEMDRAIN_ETCD_USERNAME, MEMDRAIN_ETCD_PASSWORD,
MEMDRAIN_ETCD_CA, MEMDRAIN_ETCD_CERT and MEMDRAIN_ETCD_KEY.

${EXIT_CODES_HELP}`
  static override examples = ['<%= config.bin %> pool push memdrain.json --pool etcd://10.0.0.9:2379/memdrain/prod']
  static override args = { file: Args.string({ description: 'The pool file to store.', required: true, ignoreStdin: true }) }
  static override flags = { pool: poolFlags.pool }

  async run(): Promise<PushResult> {
    const { args, flags } = await this.parse(PoolPush)
    const { pushPool } = await import('../../core/pool/copy.js')
    const target = poolStoreFromFlags(flags, (m) => this.note(m))
    const result = await pushPool(new FilePoolStore(args.file), target)
    if (!this.jsonEnabled()) this.log(`${result.replaced ? 'replaced the pool at' : 'stored the pool in'} ${result.to} (${result.servers} servers, revision ${result.revision})`)
    return result
  }
}
