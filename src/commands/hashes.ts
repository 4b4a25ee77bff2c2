import { Flags } from '@oclif/core'

import { BaseCommand, EXIT_CODES_HELP } from '../cli/base-command.js'
import { ExitCode, MemdrainError } from '../core/errors.js'
import { findClient, strategyCatalog, type StrategyEntry } from '../core/placement/catalog.js'
import { UNSUPPORTED_CLIENTS, type UnsupportedClient } from '../core/placement/unsupported.js'
import { renderTable } from '../ui/style.js'
import { MAX_WEIGHT, weightLimit } from '../core/placement/weight-limits.js'

export interface HashesResult extends StrategyEntry {
  /** Largest weight of one server, and of all servers together where the strategy has such a limit. */
  maxWeight: number
  maxTotalWeight?: number
}

function withWeightLimit(s: StrategyEntry): HashesResult {
  const limit = weightLimit(s.name)
  return { ...s, maxWeight: limit.perServer, ...(limit.total === undefined ? {} : { maxTotalWeight: limit.total }) }
}

function notSupported(u: UnsupportedClient): string {
  return `${u.impossible === true ? 'cannot be supported' : 'not supported yet'}: ${u.client}: ${u.reason}`
}

export default class Hashes extends BaseCommand<HashesResult[]> {
  static override summary = 'List the placement strategies memdrain reproduces, and the client configuration each matches.'
  static override description = `Pick the one your application's client uses and put it in the pool file's "hash" (or pass --hash).
Placement must match the application exactly, or moved keys land where nobody reads them.

KIND is "consistent" (a ring, rendezvous or jump hash: removing a server moves only its keys) or
"modulo" (hash mod the server count or total weight: removing or adding a server moves keys on
every server, so a drain reads and moves those too; \`memdrain plan SERVER\` tells how many).
mcrouter-ch3 is consistent only for servers removed or added at the end of its list.

--client NAME shows the strategies of one client (any word of its name, e.g. dalli, twemproxy,
spymemcached, mcrouter, django) and says "not supported yet: ..." for a client or configuration
memdrain does not reproduce, exiting 3 when none of its strategies match.

${EXIT_CODES_HELP}`
  static override examples = [
    '<%= config.bin %> hashes',
    '<%= config.bin %> hashes --client twemproxy',
    '<%= config.bin %> hashes --client dalli --json',
  ]
  static override flags = {
    client: Flags.string({ summary: 'Only the strategies of this client (a word of its name); says so when it is not supported.' }),
  }

  async run(): Promise<HashesResult[]> {
    const { flags } = await this.parse(Hashes)
    let result = strategyCatalog().map(withWeightLimit)
    if (flags.client !== undefined) {
      const answer = findClient(flags.client)
      if (answer.strategies.length === 0) {
        const known = [...new Set(result.map((s) => s.client))].join('; ')
        throw new MemdrainError(
          answer.unsupported.length > 0 ? answer.unsupported.map(notSupported).join('\n') : `not supported yet: "${flags.client}" is not a client memdrain reproduces`,
          {
            code: 'CLIENT_NOT_SUPPORTED',
            exitCode: ExitCode.precondition,
            suggestions: [
              `memdrain reproduces: ${known}.`,
              'A client is added only with placement vectors observed from the real client; run `memdrain hashes` for every configuration.',
            ],
            data: { unsupported: answer.unsupported },
          },
        )
      }
      result = answer.strategies.map(withWeightLimit)
      for (const u of answer.unsupported) this.note(notSupported(u))
    }
    if (!this.jsonEnabled()) {
      this.log(
        renderTable(
          ['HASH', 'KIND', 'CLIENT', 'VERSION', 'CONFIGURATION', 'WEIGHTS'],
          result.map((h) => [h.name, h.kind, h.client, h.version, h.configuration, h.weights ? (h.maxTotalWeight === undefined ? 'yes' : `yes, Σ ≤ ${h.maxTotalWeight.toLocaleString('en-US')}`) : 'no']),
        ),
      )
      this.log(`Every weight is at most ${MAX_WEIGHT.toLocaleString('en-US')} (the C clients keep it in an int); only the ratios of the weights matter.`)
      if (flags.client === undefined) {
        this.log(`\nNot supported: ${UNSUPPORTED_CLIENTS.map((u) => u.short).join('; ')}.`)
        this.log('`memdrain hashes --client NAME` says why, and which strategies a client has.')
      }
    }
    return result
  }
}
