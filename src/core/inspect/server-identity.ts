import { randomBytes } from 'node:crypto'
import { ExitCode, MemdrainError } from '../errors.js'
import type { Pool } from '../pool/model.js'
import { MemcachedNode, MetaConnection, parseAddress } from '../protocol/index.js'

/**
 * A server is what answers, not how it is spelled: `localhost:P`, `127.0.0.1:P`, `[::1]:P`,
 * `[0:0:0:0:0:0:0:1]:P` and `[::ffff:127.0.0.1]:P` can all be one memcached. Two spellings of one
 * server in a job's server list make memdrain count a key "in place" on the server it is about to
 * flush, or delete what it just copied. So before any job every spelling is asked who it is:
 * `stats` pid and start time (`time - uptime`, exact: both come from the same server clock) pick
 * the candidates, and a key written through one spelling and read back through the other
 * confirms it (two hosts can run pid 1 started in the same second; no two servers share items).
 *
 * Placement keeps the spelling the application uses (ring strategies hash it): this module only
 * decides which spellings are the same server; it never rewrites one.
 */

/** One spelling of a server and where the operator wrote it ("servers[2] of memdrain.json", "--add"). */
export interface Spelling {
  address: string
  where: string
}

/** Two spellings that reach the same memcached process. */
export interface SameServer {
  a: Spelling
  b: Spelling
  pid: string
  /** The process start, on the server's clock (ISO). */
  startedAt: string
}

/** Every server a pool lists (removed ones too: a purge of a removed entry flushes what answers). */
export function poolSpellings(pool: Pool, location: string): Spelling[] {
  return pool.servers.map((s, i) => ({ address: s.address, where: `servers[${i}] of ${location}` }))
}

interface Probe {
  address: string
  conn: MetaConnection
  /** pid and start time: equal for every spelling of one process. */
  fingerprint: string
  pid: string
  startedAt: number
}

const PROBE_TIMEOUT_MS = 2000

async function probe(address: string): Promise<Probe | undefined> {
  let conn: MetaConnection | undefined
  try {
    conn = await MetaConnection.connect(parseAddress(address), { connectTimeoutMs: PROBE_TIMEOUT_MS, requestTimeoutMs: PROBE_TIMEOUT_MS })
    const st = await conn.stats()
    const pid = st.get('pid')
    const time = Number(st.get('time'))
    const uptime = Number(st.get('uptime'))
    if (pid === undefined || !Number.isFinite(time) || !Number.isFinite(uptime)) {
      await conn.close()
      return undefined
    }
    return { address, conn, pid, startedAt: time - uptime, fingerprint: `${pid}@${time - uptime}` }
  } catch {
    // Unreachable, not memcached, needs credentials: the job's own checks name that. A server
    // that does not answer cannot be told apart, and memdrain cannot write to it either.
    await conn?.close().catch(() => undefined)
    return undefined
  }
}

/**
 * Among probes with the same fingerprint, which are the same server: each writes a key of its
 * own (60 s TTL, deleted right after), and a probe that reads another's key shares its items.
 * Where the key cannot be written or read back (a full server started with -M, a timeout), the
 * equal pid and start time decide: a refusal the operator can look into beats a flushed server.
 */
async function confirm(group: Probe[]): Promise<[Probe, Probe][]> {
  const token = randomBytes(8).toString('hex')
  const keyOf = (i: number): Buffer => Buffer.from(`memdrain:identity:${token}:${i}`)
  const nodes = group.map((p) => MemcachedNode.of(p.conn))
  const written = new Set<number>()
  const pairs: [Probe, Probe][] = []
  try {
    for (const [i, node] of nodes.entries()) {
      const item = { value: Buffer.from('id'), flags: 0, ttl: 60 }
      const [stored] = await node.set([{ key: keyOf(i), item }]).catch(() => [undefined])
      if (stored?.stored === true) written.add(i)
    }
    for (const [i, p] of group.entries()) {
      for (const [j, q] of group.entries()) {
        if (j <= i) continue
        // Only a clean miss of p's key through q says they are two servers.
        const missed = written.has(i) && (await nodes[j]!.readForMove([keyOf(i)]).then(([item]) => item === undefined, () => false))
        if (!missed) pairs.push([p, q])
      }
    }
  } finally {
    for (const i of written) await nodes[i]!.delete([keyOf(i)]).catch(() => undefined)
  }
  return pairs
}

/** The pairs of spellings in `list` that reach the same server (distinct spellings only; unreachable ones are skipped). */
export async function findSameServers(list: readonly Spelling[]): Promise<SameServer[]> {
  const first = new Map<string, Spelling>()
  for (const s of list) if (!first.has(s.address)) first.set(s.address, s)
  if (first.size < 2) return []
  const probes = (await Promise.all([...first.keys()].map(probe))).filter((p): p is Probe => p !== undefined)
  try {
    const groups = new Map<string, Probe[]>()
    for (const p of probes) groups.set(p.fingerprint, [...(groups.get(p.fingerprint) ?? []), p])
    const same: SameServer[] = []
    for (const group of groups.values()) {
      if (group.length < 2) continue
      for (const [a, b] of await confirm(group)) {
        same.push({ a: first.get(a.address)!, b: first.get(b.address)!, pid: a.pid, startedAt: new Date(a.startedAt * 1000).toISOString() })
      }
    }
    return same
  } finally {
    await Promise.all(probes.map((p) => p.conn.close().catch(() => undefined)))
  }
}

/** "A (where) and B (where) are the same memcached (pid N, started T)". */
export function describeSameServer(s: SameServer): string {
  return `${s.a.address} (${s.a.where}) and ${s.b.address} (${s.b.where}) are the same memcached (pid ${s.pid}, started ${s.startedAt})`
}

/**
 * Refuses (exit 3, SAME_SERVER) when two spellings in `list` reach the same server, naming both.
 * Every job calls it once, with every server it may read, write or flush, before it changes anything;
 * `matters` keeps only the pairs that job cares about.
 */
export async function refuseSameServers(list: readonly Spelling[], matters: (s: SameServer) => boolean = () => true): Promise<void> {
  const same = (await findSameServers(list)).filter(matters)
  if (same.length === 0) return
  throw new MemdrainError(`${same.map(describeSameServer).join('; ')}: memdrain would count keys as moved to the server it then flushes or deletes from`, {
    code: 'SAME_SERVER',
    exitCode: ExitCode.precondition,
    suggestions: [
      'List each server once, under the spelling the applications use (their client hashes that spelling).',
      'Delete the other entry from the pool file (or the command line) and run again.',
    ],
    data: { same: same.map((s) => ({ a: s.a, b: s.b, pid: s.pid, startedAt: s.startedAt })) },
  })
}
