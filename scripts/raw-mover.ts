/**
 * The raw mover: the reference the benchmarks measure memdrain against. The least a mover can
 * do: `lru_crawler metadump all` (no wait, no dedupe, no spool), and while the dump streams,
 * batches of 500 keys moved with pipelined meta commands — `mg <key> v f t c u q` on the source,
 * `ms <key> … ME q` on the owner under the pool without the source, `md <key> C<cas> q` on the
 * source — 4 batches in flight; passes until a dump finds nothing to move (a dump misses keys
 * touched while it walks). No throttle, no guard, no resume, no hot-first, no pool record.
 *
 *   node --import tsx scripts/raw-mover.ts --source 127.0.0.1:11211 --pool a:11211,b:11211 [--hash php-memcached-libketama]
 *
 * `--pool` lists the destinations (the pool without the source). `rawMove` is what the bench
 * calls in-process; with `--only-dump` it walks and routes without moving (the dump rate).
 */
import { parseArgs } from 'node:util'
import { pathToFileURL } from 'node:url'
import { MemcachedNode, MetaConnection, MetaPayload, parseAddress, VA } from '../src/core/protocol/index.js'
import { validatePool } from '../src/core/pool/validate.js'
import { poolPlacement } from '../src/core/pool/placement.js'

export interface RawMoveOptions {
  source: string
  destinations: readonly string[]
  hash: string
  /** Only keys whose owner differs from `keep` move (rebalance: the source's own index in `destinations`, -1 = move all). */
  keep?: number
  batchSize?: number
  inFlight?: number
  onlyDump?: boolean
}

export interface RawMoveResult {
  listed: number
  moved: number
  seconds: number
}

const MG_FLAGS = Buffer.from(' v f t c u q', 'latin1')
const ADD_FLAGS = Buffer.from(' ME q', 'latin1')
const Q_FLAG = Buffer.from(' q', 'latin1')

export async function rawMove(opts: RawMoveOptions): Promise<RawMoveResult> {
  const started = performance.now()
  const total = { listed: 0, moved: 0 }
  for (let pass = 1; pass <= 6; pass++) {
    const r = await rawPass(opts)
    total.listed += r.listed
    total.moved += r.moved
    if (r.moved === 0 || opts.onlyDump === true) break
  }
  return { ...total, seconds: (performance.now() - started) / 1000 }
}

async function rawPass(opts: RawMoveOptions): Promise<{ listed: number; moved: number }> {
  const batchSize = opts.batchSize ?? 500
  const inFlight = opts.inFlight ?? 4
  const keep = opts.keep ?? -1
  const pool = validatePool({ hash: opts.hash, replicas: 1, servers: opts.destinations.map((address) => ({ address })) }, 'raw-mover')
  const placement = poolPlacement(pool).placement
  const source = await MetaConnection.connect(parseAddress(opts.source), { requestTimeoutMs: 30_000 })
  const dests = await Promise.all(opts.destinations.map((d) => MetaConnection.connect(parseAddress(d), { requestTimeoutMs: 30_000 })))

  interface Batch {
    keys: Buffer[]
    owners: number[]
  }
  const ready: Batch[] = []
  let current: Batch = { keys: [], owners: [] }
  let dumpDone = false
  let listed = 0
  let moved = 0
  const waiters: (() => void)[] = []
  const notify = (): void => {
    for (const w of waiters.splice(0)) w()
  }

  const moveBatch = async (b: Batch, mg: MetaPayload, perDest: MetaPayload[], md: MetaPayload): Promise<void> => {
    const n = b.keys.length
    const values: (Buffer | undefined)[] = new Array(n)
    const flags = new Float64Array(n)
    const ttls = new Float64Array(n)
    const cas: string[] = new Array(n)
    for (let i = 0; i < n; i++) mg.command('mg', b.keys[i]!).encodedFlags(MG_FLAGS).flag('O', i).end()
    await source.batch(mg.noop().take(), (r) => {
      if (r.status !== VA || r.opaque < 0) return
      values[r.opaque] = Buffer.from(r.value!)
      flags[r.opaque] = r.flagInt('f')
      ttls[r.opaque] = r.flagInt('t')
      cas[r.opaque] = r.flagToken('c')!
    })
    const used = new Uint8Array(dests.length)
    for (let i = 0; i < n; i++) {
      const v = values[i]
      if (v === undefined) continue
      const d = b.owners[i]!
      const t = ttls[i]!
      perDest[d]!.command('ms', b.keys[i]!).size(v.length).flag('F', flags[i]!).flag('T', t === -1 ? 0 : t).encodedFlags(ADD_FLAGS).flag('O', i).end(v)
      used[d] = 1
    }
    await Promise.all(dests.map((c, d) => (used[d] === 1 ? c.batch(perDest[d]!.noop().take(), () => undefined) : undefined)))
    for (let i = 0; i < n; i++) {
      if (values[i] === undefined) continue
      md.command('md', b.keys[i]!).flagToken('C', cas[i]!).encodedFlags(Q_FLAG).end()
      moved++
    }
    await source.batch(md.noop().take(), () => undefined)
  }

  const worker = async (): Promise<void> => {
    const mg = new MetaPayload()
    const md = new MetaPayload()
    const perDest = dests.map(() => new MetaPayload())
    for (;;) {
      const b = ready.shift()
      if (b === undefined) {
        if (dumpDone) return
        await new Promise<void>((resolve) => waiters.push(resolve))
        continue
      }
      if (opts.onlyDump !== true) await moveBatch(b, mg, perDest, md)
    }
  }
  const workers = Array.from({ length: inFlight }, worker)
  try {
    await new MemcachedNode(opts.source).dump({
      mode: 'all',
      expansionWaitMs: 0,
      onEntry: (e) => {
        listed++
        const owner = placement.owner(e.key)
        if (owner === keep) return
        current.keys.push(Buffer.from(e.key))
        current.owners.push(owner)
        if (current.keys.length >= batchSize) {
          ready.push(current)
          current = { keys: [], owners: [] }
          notify()
        }
      },
    })
    if (current.keys.length > 0) ready.push(current)
    dumpDone = true
    notify()
    await Promise.all(workers)
  } finally {
    await Promise.all([source, ...dests].map((c) => c.close().catch(() => undefined)))
  }
  return { listed, moved }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const { values: argv } = parseArgs({
    options: {
      source: { type: 'string' },
      pool: { type: 'string' },
      hash: { type: 'string', default: 'php-memcached-libketama' },
      'only-dump': { type: 'boolean', default: false },
    },
    strict: true,
  })
  if (argv.source === undefined || argv.pool === undefined) {
    process.stderr.write('usage: node --import tsx scripts/raw-mover.ts --source HOST:PORT --pool HOST:PORT,HOST:PORT [--hash NAME] [--only-dump]\n')
    process.exit(2)
  }
  const r = await rawMove({ source: argv.source, destinations: argv.pool.split(','), hash: argv.hash!, onlyDump: argv['only-dump'] })
  process.stdout.write(`${JSON.stringify({ ...r, keysPerSecond: Math.round(r.moved / r.seconds) })}\n`)
}
