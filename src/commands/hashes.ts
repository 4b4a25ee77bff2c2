import { BaseCommand, EXIT_CODES_HELP } from '../cli/base-command.js'
import { HASH_INFO, HASH_NAMES, type HashName } from '../core/placement/registry.js'
import { renderTable } from '../ui/style.js'
import { MAX_WEIGHT, weightLimit } from '../core/placement/weight-limits.js'

export interface HashesResult {
  name: HashName
  client: string
  configuration: string
  algorithm: string
  weights: boolean
  usesNames: boolean
  /** Largest weight of one server, and of all servers together where the strategy has such a limit. */
  maxWeight: number
  maxTotalWeight?: number
}

export default class Hashes extends BaseCommand<HashesResult[]> {
  static override summary = 'List the placement strategies memdrain reproduces, and the client configuration each matches.'
  static override description = `Pick the one your application's client uses and put it in the pool file's "hash" (or pass --hash).
Placement must match the application exactly, or moved keys land where nobody reads them.

${EXIT_CODES_HELP}`
  static override examples = ['<%= config.bin %> hashes', '<%= config.bin %> hashes --json']

  async run(): Promise<HashesResult[]> {
    await this.parse(Hashes)
    const result: HashesResult[] = HASH_NAMES.map((name) => {
      const limit = weightLimit(name)
      return { name, ...HASH_INFO[name], maxWeight: limit.perServer, ...(limit.total === undefined ? {} : { maxTotalWeight: limit.total }) }
    })
    if (!this.jsonEnabled()) {
      this.log(
        renderTable(
          ['HASH', 'CLIENT', 'CONFIGURATION', 'WEIGHTS'],
          result.map((h) => [h.name, h.client, h.configuration, h.weights ? (h.maxTotalWeight === undefined ? 'yes' : `yes, Σ ≤ ${h.maxTotalWeight.toLocaleString('en-US')}`) : 'no']),
        ),
      )
      this.log(`Every weight is at most ${MAX_WEIGHT.toLocaleString('en-US')} (the C clients keep it in an int); only the ratios of the weights matter.`)
    }
    return result
  }
}
