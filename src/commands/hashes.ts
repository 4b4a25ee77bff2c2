import { BaseCommand, EXIT_CODES_HELP } from '../cli/base-command.js'
import { HASH_INFO, HASH_NAMES, type HashName } from '../core/placement/registry.js'
import { renderTable } from '../ui/style.js'

export interface HashesResult {
  name: HashName
  client: string
  configuration: string
  algorithm: string
  weights: boolean
  usesNames: boolean
  /** 'modulo': removing a server changes the owner of most keys on the others (a drain reads every server); 'consistent': only its keys. */
  kind: 'consistent' | 'modulo'
}

export default class Hashes extends BaseCommand<HashesResult[]> {
  static override summary = 'List the placement strategies memdrain reproduces, and the client configuration each matches.'
  static override description = `Pick the one your application's client uses and put it in the pool file's "hash" (or pass --hash).
Placement must match the application exactly, or moved keys land where nobody reads them.
PLACEMENT says what removing a server does: consistent (a ring) changes the owner of that server's
keys only; modulo (hash mod n) changes the owner of most keys on the servers that stay too, so a
drain reads and moves those as well (\`memdrain plan SERVER\` tells how many).

${EXIT_CODES_HELP}`
  static override examples = ['<%= config.bin %> hashes', '<%= config.bin %> hashes --json']

  async run(): Promise<HashesResult[]> {
    await this.parse(Hashes)
    const result = HASH_NAMES.map((name) => ({ name, ...HASH_INFO[name] }))
    if (!this.jsonEnabled()) {
      this.log(
        renderTable(
          ['HASH', 'CLIENT', 'CONFIGURATION', 'WEIGHTS', 'PLACEMENT'],
          result.map((h) => [h.name, h.client, h.configuration, h.weights ? 'yes' : 'no', h.kind]),
        ),
      )
    }
    return result
  }
}
