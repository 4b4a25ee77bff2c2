import { Flags } from '@oclif/core'
import path from 'node:path'
import { BaseCommand, EXIT_CODES_HELP, poolFlags, poolStoreFromFlags } from '../../cli/base-command.js'
import type { PoolDocument } from './show.js'

export interface PullResult {
  location: string
  revision: string
  /** Where it was written (-o), else undefined: printed on stdout. */
  output?: string
  pool: PoolDocument
}

export default class PoolPull extends BaseCommand<PullResult> {
  static override summary = 'Print the pool named by --pool as a pool file (or write it with -o, atomically).'
  static override description = `The document is validated first. Without -o it is printed on stdout exactly as a pool file holds it,
so \`memdrain pool pull --pool etcd://… > memdrain.json\` makes a file; -o FILE replaces FILE atomically
(mode 0600). With --json the envelope's result carries the document.

${EXIT_CODES_HELP}`
  static override examples = [
    '<%= config.bin %> pool pull --pool etcd://10.0.0.9:2379/memdrain/prod > memdrain.json',
    '<%= config.bin %> pool pull --pool etcd://10.0.0.9:2379/memdrain/prod -o memdrain.json',
  ]
  static override flags = {
    pool: poolFlags.pool,
    output: Flags.string({ char: 'o', description: 'Write the pool to this file (atomically) instead of stdout.' }),
  }

  async run(): Promise<PullResult> {
    const { flags } = await this.parse(PoolPull)
    const { poolText } = await import('../../core/pool/copy.js')
    const store = poolStoreFromFlags(flags)
    const snap = await store.load()
    const text = poolText(snap.pool)
    const result: PullResult = { location: store.location, revision: snap.revision, pool: JSON.parse(text) as PoolDocument }
    if (flags.output !== undefined) {
      const { writeFileAtomic } = await import('../../core/pool/atomic-write.js')
      const file = path.resolve(flags.output)
      await writeFileAtomic(file, text)
      result.output = file
      if (!this.jsonEnabled()) this.info(`wrote the pool at ${store.location} (revision ${snap.revision}) to ${file}`)
    } else if (!this.jsonEnabled()) {
      process.stdout.write(text)
    }
    return result
  }
}
