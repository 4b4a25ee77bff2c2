/**
 * Clients and configurations memdrain does not place keys for (yet), with the reason, so that
 * `memdrain hashes --client` and the pool-file check answer "not supported yet: ..." rather than
 * letting an operator pick a strategy that only looks close. A strategy is added only with golden
 * vectors observed from the real client.
 */

export interface UnsupportedClient {
  /** The client or configuration, as an operator would name it. */
  readonly client: string
  /** A few words for the list under `memdrain hashes`. */
  readonly short: string
  /** Lower-case words that select this entry in `hashes --client`. */
  readonly aliases: readonly string[]
  readonly reason: string
  /** True when no strategy can ever reproduce it (not a "yet"). */
  readonly impossible?: boolean
}

const TWEMPROXY_RANDOM =
  'twemproxy\'s "distribution: random" sends every request (set, get, delete) to continuum[random() % n] after srandom(the second the proxy started), so a key\'s server depends on that second and on every request the proxy served: there is no static placement to reproduce, and any key may be on any server'

export const UNSUPPORTED_CLIENTS: readonly UnsupportedClient[] = [
  {
    client: 'twemproxy distribution: random',
    short: 'twemproxy distribution: random (cannot be reproduced)',
    aliases: ['twemproxy-random', 'nutcracker-random', 'random'],
    reason: TWEMPROXY_RANDOM,
    impossible: true,
  },
  {
    client: 'mcrouter Rendezvous, WeightedRendezvous, WeightedCh3Rv, ConstShard, Latest, LoadBalancer hash functions; bucketize: true; "salt"',
    short: 'mcrouter Rendezvous/WeightedCh3Rv/ConstShard/salt/bucketize',
    aliases: ['mcrouter-rendezvous', 'mcrouter-weightedrendezvous', 'mcrouter-weightedch3rv', 'mcrouter-constshard', 'mcrouter-latest', 'mcrouter-loadbalancer', 'mcrouter-bucketize', 'mcrouter-salt'],
    reason: 'only Ch3, Crc32 and WeightedCh3 (without salt or bucketize) have golden vectors; the others are not reproduced yet',
  },
  {
    client: 'spymemcached ketama rings with CRC_HASH or FNV hashes, or the LIBMEMCACHED key format with weights',
    short: 'spymemcached ketama with CRC/FNV hashes',
    aliases: ['spymemcached-crc', 'spymemcached-fnv', 'spymemcached-ketama-libmemcached-weighted'],
    reason: 'not observed from the client yet (no golden vectors)',
  },
  {
    client: 'libmemcached (php-memcached, pylibmc) with another OPT_HASH (crc, fnv1_64, fnv1a_64, fnv1_32, fnv1a_32, hsieh, murmur, jenkins)',
    short: 'libmemcached with other OPT_HASH values',
    aliases: ['libmemcached-crc', 'libmemcached-fnv', 'libmemcached-hsieh', 'libmemcached-murmur', 'libmemcached-jenkins', 'pylibmc-hash', 'php-memcached-hash'],
    reason: 'only the default hash and md5 have golden vectors; the other key hashes are not reproduced yet',
  },
  { client: 'Xmemcached (Java)', short: 'Xmemcached', aliases: ['xmemcached'], reason: 'no strategy observed from this client yet' },
  { client: 'Folsom (Java, Spotify)', short: 'Folsom', aliases: ['folsom'], reason: 'no strategy observed from this client yet' },
  { client: 'EnyimMemcached (.NET)', short: 'EnyimMemcached', aliases: ['enyim', 'enyimmemcached', '.net', 'dotnet', 'csharp'], reason: 'no strategy observed from this client yet' },
  { client: 'rust-memcache (Rust)', short: 'rust-memcache', aliases: ['rust', 'rust-memcache'], reason: 'no strategy observed from this client yet' },
  { client: 'Elixir / Erlang clients (memcachex, mcd)', short: 'Elixir/Erlang clients', aliases: ['elixir', 'erlang', 'memcachex', 'mcd'], reason: 'no strategy observed from these clients yet' },
]

/**
 * Why a strategy name is refused outright (it names a configuration that cannot be reproduced),
 * with what to do instead; undefined for every other name.
 */
export function refusedHash(name: string): { reason: string; suggestions: string[] } | undefined {
  if (/^twemproxy[-_]random([-_].*)?$/.test(name)) {
    return {
      reason: TWEMPROXY_RANDOM,
      suggestions: [
        'Switch the twemproxy pool to "distribution: ketama" (or modula) first; memdrain can then drain it with the matching twemproxy-<distribution>-<hash> strategy.',
        'Run `memdrain hashes --client twemproxy` to see them.',
      ],
    }
  }
  return undefined
}

/** The entries `query` names (a word of an alias or of the client name). */
export function unsupportedMatches(query: string): UnsupportedClient[] {
  const q = query.toLowerCase().trim().replaceAll(/[_\s]+/g, '-')
  if (q === '') return []
  return UNSUPPORTED_CLIENTS.filter((u) => u.aliases.some((a) => a.includes(q) || q.startsWith(`${a}-`)) || u.client.toLowerCase().includes(q))
}
