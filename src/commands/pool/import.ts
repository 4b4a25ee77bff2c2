import { Args, Flags } from '@oclif/core'
import path from 'node:path'
import { BaseCommand, EXIT_CODES_HELP, usageError } from '../../cli/base-command.js'
import { CONFIG_FORMATS } from '../../core/pool/model.js'
import type { PoolDocument } from './show.js'

export interface ImportResult {
  /** The pool file written; undefined with --print. */
  file?: string
  from: string
  poolName: string
  hash: string
  servers: number
  /** What the pool file does not carry over from the config, and defaults assumed. */
  notes: string[]
  pool: PoolDocument
}

export default class PoolImport extends BaseCommand<ImportResult> {
  static override summary = 'Make a pool file from a twemproxy (nutcracker.yml) or mcrouter config.'
  static override description = `Reads one pool of CONFIG (--pool-name, or the only pool) and writes a pool file: the placement
strategy the proxy uses, its servers in placement order, weights and names. The pool file records
where it came from ("origin"), so that \`pool export\` and the switch command (MEMDRAIN_NEW_CONFIG)
can write the config back with the new server list, keeping everything else of the file.

twemproxy: hash and distribution with twemproxy's defaults (fnv1a_64, ketama); servers
"host:port:weight [name]", listed in twemproxy's own order (identities sorted shorter first, then
bytewise). Refused, with the reason: distribution random (no key has a fixed server), hash_tag,
redis pools, unix sockets, and hash/distribution pairs memdrain does not reproduce.

mcrouter: the pool's servers in configuration order; the hash from the routes that use the pool
(PoolRoute "hash", pool "weights", HashRoute over "Pool|NAME"; Ch3 by default). Refused: salt,
bucketize, shard_splits, routes that hash the pool differently, hash functions not reproduced.

Everything the pool file does not carry over is listed (stderr, or "notes" with --json).
The file is not overwritten unless --force.

${EXIT_CODES_HELP}`
  static override examples = [
    '<%= config.bin %> pool import /etc/nutcracker/nutcracker.yml --from twemproxy --pool-name alpha --pool memdrain.json',
    '<%= config.bin %> pool import /etc/mcrouter/mcrouter.json --from mcrouter --pool-name main',
    '<%= config.bin %> pool import nutcracker.yml --from twemproxy --print',
  ]
  static override args = { config: Args.string({ description: 'The config file to read.', required: true, ignoreStdin: true }) }
  static override flags = {
    from: Flags.string({ description: 'Format of the config.', options: [...CONFIG_FORMATS], required: true }),
    'pool-name': Flags.string({ description: 'The pool to read, when the config has several.' }),
    pool: Flags.string({ description: 'The pool file to write (default: $MEMDRAIN_POOL, else ./memdrain.json).' }),
    force: Flags.boolean({ description: 'Replace the pool file if it exists.' }),
    print: Flags.boolean({ description: 'Print the pool file on stdout instead of writing it.' }),
  }

  async run(): Promise<ImportResult> {
    const { args, flags } = await this.parse(PoolImport)
    const { importConfig } = await import('../../core/pool/config/index.js')
    const { poolText } = await import('../../core/pool/copy.js')
    const imported = await importConfig(args.config, flags.from as (typeof CONFIG_FORMATS)[number], flags['pool-name'])
    const text = poolText(imported.pool)
    const result: ImportResult = {
      from: flags.from,
      poolName: imported.poolName,
      hash: imported.pool.hash,
      servers: imported.pool.servers.length,
      notes: imported.notes,
      pool: JSON.parse(text) as PoolDocument,
    }
    for (const n of imported.notes) if (!this.jsonEnabled()) this.info(`note: ${n}`)
    if (flags.print) {
      if (!this.jsonEnabled()) process.stdout.write(text)
      return result
    }
    const target = flags.pool ?? process.env.MEMDRAIN_POOL ?? 'memdrain.json'
    if (target.startsWith('etcd://')) throw usageError('pool import writes a file', [`Write a file, then store it: memdrain pool push FILE --pool ${target}`])
    const file = path.resolve(target)
    const { writeFileAtomic } = await import('../../core/pool/atomic-write.js')
    const { access } = await import('node:fs/promises')
    const exists = await access(file).then(() => true, () => false)
    if (exists && !flags.force) throw usageError(`${file} exists; not replaced`, ['Pass --force to replace it, or --pool OTHER_FILE.'])
    await writeFileAtomic(file, text)
    result.file = file
    if (!this.jsonEnabled()) this.log(`wrote ${file}: ${imported.pool.hash}, ${result.servers} servers (pool "${imported.poolName}" of ${path.resolve(args.config)})`)
    return result
  }
}
