/**
 * The placement contract every strategy implements. A strategy is built once per pool
 * (rings, bucket tables and identity strings are precomputed) and then asked per key, on
 * the hot path: `owner` and `chain` must not allocate beyond what the hash itself needs.
 */

/** One server as the application's client was configured with it. */
export interface PlacementServer {
  /** The address exactly as written in the pool ("host:port"); identities are built from host and port. */
  readonly address: string
  readonly host: string
  readonly port: number
  /**
   * Positive integer weight (1 when the client has no weights); for mcrouter-weighted-ch3 a number
   * in [0, 1] (mcrouter's `"weights"`).
   */
  readonly weight: number
  /** twemproxy server name, when the strategy hashes names. */
  readonly name?: string | undefined
  /**
   * What Java's `InetSocketAddress.getHostName()` returned for this server in the application's
   * JVM (spymemcached-ketama-libmemcached): for an IP literal, its reverse-DNS name (e.g.
   * `localhost` for 127.0.0.1 through /etc/hosts), or the literal when there is no PTR record.
   */
  readonly hostname?: string | undefined
  /**
   * The IP address the Java client resolved a host name to at its start (spymemcached ketama rings
   * in the default SPYMEMCACHED format hash `name/ip:port`).
   */
  readonly resolved?: string | undefined
}

export interface Placement {
  /** The servers this placement was built for, in configuration order. */
  readonly servers: readonly PlacementServer[]
  /** Index (into `servers`) of the server that owns the key. Keys are the bytes the client sends. */
  owner(key: Uint8Array): number
  /**
   * The n distinct servers a replicating client writes the key to, owner first. n is clamped
   * to the server count. When `out` is given it is cleared and filled (no allocation).
   */
  chain(key: Uint8Array, n: number, out?: number[]): number[]
}
