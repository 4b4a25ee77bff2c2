/**
 * The strategy catalogue as `memdrain hashes` shows it: every strategy with its client, and the
 * answer to "does memdrain support client X?" (strategies that match, and the "not supported yet"
 * entries that do).
 */

import { HASH_INFO, HASH_NAMES, type HashInfo, type HashName } from './registry.js'
import { unsupportedMatches, type UnsupportedClient } from './unsupported.js'

export interface StrategyEntry extends HashInfo {
  readonly name: HashName
}

export function strategyCatalog(): StrategyEntry[] {
  return HASH_NAMES.map((name) => ({ name, ...HASH_INFO[name] }))
}

export interface ClientAnswer {
  readonly strategies: StrategyEntry[]
  readonly unsupported: UnsupportedClient[]
}

/** Lower case, `_` and spaces as `-`, so "Ruby Dalli", "twemproxy_ketama" and "spymemcached" all match. */
function normalize(s: string): string {
  return s.toLowerCase().trim().replaceAll(/[_\s]+/g, '-')
}

/**
 * Strategies whose name or client contains `query` (every word of it), and the unsupported
 * configurations it names. An empty answer means memdrain knows nothing of that client.
 */
export function findClient(query: string): ClientAnswer {
  const q = normalize(query)
  const words = q.split('-').filter((w) => w !== '')
  const strategies = strategyCatalog().filter((s) => {
    const hay = `${s.name} ${normalize(s.client)} ${normalize(s.configuration)}`
    return hay.includes(q) || (words.length > 0 && words.every((w) => hay.includes(w)))
  })
  return { strategies, unsupported: unsupportedMatches(q) }
}
