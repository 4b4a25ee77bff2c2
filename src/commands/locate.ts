import { Args, Flags } from '@oclif/core'
import { readFile } from 'node:fs/promises'
import { BaseCommand, EXIT_CODES_HELP, poolFlags, poolStoreFromFlags, usageError } from '../cli/base-command.js'
import { locateKey, poolPlacement, type KeyLocation } from '../core/pool/placement.js'
import { paint } from '../ui/style.js'

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}

function splitLines(text: string): string[] {
  return text.split(/\r?\n/).filter((l) => l !== '')
}

export default class Locate extends BaseCommand<KeyLocation[]> {
  static override summary = 'Show which server owns each key (and its replica chain), as the application\'s client computes it.'
  static override description = `Keys come as arguments, from --keys-file (one per line), or one per line on stdin.
Only active servers own keys: a deactivating server's keys are placed on their new owners.

${EXIT_CODES_HELP}`
  static override examples = [
    '<%= config.bin %> locate user:42 session:abc',
    '<%= config.bin %> locate --keys-file keys.txt --json',
    'printf "a\\nb\\n" | <%= config.bin %> locate --servers 10.0.0.1:11211,10.0.0.2:11211 --hash memjs',
  ]
  static override strict = false
  static override args = { key: Args.string({ description: 'Keys to locate.', required: false, ignoreStdin: true }) }
  static override flags = {
    ...poolFlags,
    'keys-file': Flags.string({ description: 'File with one key per line.' }),
  }

  async run(): Promise<KeyLocation[]> {
    const { argv, flags } = await this.parse(Locate)
    let keys = argv as string[]
    if (flags['keys-file'] !== undefined) {
      if (keys.length > 0) throw usageError('give keys as arguments or with --keys-file, not both')
      keys = splitLines(await readFile(flags['keys-file'], 'utf8').catch((err: Error) => {
        throw usageError(`cannot read --keys-file: ${err.message}`)
      }))
    } else if (keys.length === 0) {
      if (process.stdin.isTTY) throw usageError('no keys given', ['Pass keys as arguments, --keys-file FILE, or pipe them one per line.'])
      keys = splitLines(await readStdin())
    }
    const { pool } = await poolStoreFromFlags(flags).load()
    const pp = poolPlacement(pool)
    const scratch: number[] = []
    const result = keys.map((k) => {
      if (Buffer.byteLength(k) > 250) this.note(`key "${k.slice(0, 40)}…" is longer than 250 bytes: memcached refuses it`)
      return locateKey(pp, k, scratch)
    })
    if (!this.jsonEnabled()) {
      for (const r of result) {
        const chain = r.chain.length > 1 ? paint.dim(`  (chain: ${r.chain.join(' → ')})`) : ''
        this.log(`${r.key}\t${paint.bold(r.server)}${chain}`)
      }
    }
    return result
  }
}
