/**
 * Shared fixtures of the drain tests: a pool of real memcached servers in a pool file, bulk
 * reads and writes over the meta protocol, and placement under the pool without a server.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { MetaConnection, MetaPayload, parseAddress, VA, type MetaReply } from '../../src/core/protocol/index.js'
import { FilePoolStore } from '../../src/core/pool/store.js'
import { poolPlacement } from '../../src/core/pool/placement.js'
import { parsePoolText } from '../../src/core/pool/validate.js'
import type { Pool, PoolServer } from '../../src/core/pool/model.js'
import assert from 'node:assert/strict'
import type { DrainOptions, DrainResult } from '../../src/core/jobs/drain.js'
import { runCli } from '../helpers/cli.js'
import { JOB_DEFAULTS } from '../../src/core/defaults.js'
import { startMemcached, type MemcachedServer, type StartOptions } from '../helpers/memcached.js'

export interface TestPool {
  servers: MemcachedServer[]
  dir: string
  file: string
  store: FilePoolStore
  /** The pool file as it is now. */
  pool(): Pool
  server(address: string): PoolServer
  /** Owner chain of `key` (addresses) under the pool's active servers minus `without`. */
  chainWithout(without: string, key: Buffer): string[]
  /** Stops the servers, deletes the directory. */
  stop(): Promise<void>
}

export async function startPool(
  count: number,
  opts: { hash?: string; replicas?: number; clients?: 'static' | 'pool-aware'; server?: (i: number) => StartOptions } = {},
): Promise<TestPool> {
  const servers = await Promise.all(Array.from({ length: count }, (_, i) => startMemcached(opts.server?.(i) ?? {})))
  const dir = mkdtempSync(path.join(tmpdir(), 'memdrain-drain-test-'))
  const file = path.join(dir, 'memdrain.json')
  writeFileSync(
    file,
    JSON.stringify({
      hash: opts.hash ?? 'memjs',
      replicas: opts.replicas ?? 1,
      ...(opts.clients !== undefined ? { clients: opts.clients } : {}),
      servers: servers.map((s) => ({ address: s.address })),
    }),
  )
  const store = new FilePoolStore(file)
  const pool = (): Pool => parsePoolText(readFileSync(file, 'utf8'), file)
  return {
    servers,
    dir,
    file,
    store,
    pool,
    server: (address) => pool().servers.find((s) => s.address === address)!,
    chainWithout(without, key) {
      const p = pool()
      const remaining = p.servers.filter((s) => s.state === 'active' && s.address !== without)
      const pp = poolPlacement({ ...p, servers: remaining }, remaining)
      return pp.placement.chain(key, pp.replicas).map((i) => remaining[i]!.address)
    },
    async stop() {
      await Promise.all(servers.map((s) => s.kill()))
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

/** runDrain options for tests: unthrottled, no client grace, the spool in the test's directory. */
export function drainOptions(pool: TestPool, server: string, extra: Partial<DrainOptions> = {}): DrainOptions {
  return {
    store: pool.store,
    server,
    threshold: JOB_DEFAULTS.threshold,
    purge: true,
    rate: 0,
    bandwidth: 0,
    minTtl: JOB_DEFAULTS.minTtl,
    minFree: JOB_DEFAULTS.minFree,
    allowEvictions: false,
    order: 'hot-first',
    spoolDir: path.join(pool.dir, 'spool'),
    dryRun: false,
    clientGraceSeconds: 0,
    // These tests exercise the move hand-off's mechanism on pools whose clients field is absent
    // (static); the refusal of a move on static clients has its own test.
    force: true,
    ...extra,
  }
}

export interface Item {
  key: Buffer
  value: Buffer
  flags?: number
  /** As sent in T: seconds (≤ 30 days) or an absolute unix time; 0 = no expiry. */
  ttl?: number
}

export interface Stored {
  value: Buffer
  flags: number
  /** Remaining seconds, -1 = no expiry. */
  ttl: number
  cas: string
}

const CHUNK = 500

/** Sets the items (pipelined, batches of 500). */
export async function setAll(conn: MetaConnection, items: readonly Item[]): Promise<void> {
  for (let start = 0; start < items.length; start += CHUNK) {
    const p = new MetaPayload()
    for (const it of items.slice(start, start + CHUNK)) {
      p.command('ms', it.key).size(it.value.length).flag('F', it.flags ?? 0).flag('T', it.ttl ?? 0).flags('q').end(it.value)
    }
    const errors: string[] = []
    await conn.batch(p.noop().take(), (r) => errors.push(r.line()))
    if (errors.length > 0) throw new Error(`setAll on ${conn.server}: ${errors.slice(0, 3).join('; ')}`)
  }
}

/** Reads the keys (mg v f t c): a map from the key's hex to what is stored; absent keys are missing. */
export async function getAll(conn: MetaConnection, keys: readonly Buffer[]): Promise<Map<string, Stored>> {
  const out = new Map<string, Stored>()
  for (let start = 0; start < keys.length; start += CHUNK) {
    const slice = keys.slice(start, start + CHUNK)
    const p = new MetaPayload()
    slice.forEach((k, i) => p.command('mg', k).flags('v f t c q').flag('O', i).end())
    await conn.batch(p.noop().take(), (r: MetaReply) => {
      if (r.status !== VA) return
      out.set(slice[r.opaque]!.toString('hex'), { value: Buffer.from(r.value!), flags: r.flagInt('f'), ttl: r.flagInt('t'), cas: r.flagToken('c')! })
    })
  }
  return out
}

export async function deleteAll(conn: MetaConnection, keys: readonly Buffer[]): Promise<void> {
  const p = new MetaPayload()
  for (const k of keys) p.command('md', k).flags('q').end()
  await conn.batch(p.noop().take(), () => undefined)
}

export async function connect(server: MemcachedServer | string): Promise<MetaConnection> {
  return MetaConnection.connect(parseAddress(typeof server === 'string' ? server : server.address))
}

export async function stat(server: MemcachedServer | string, name: string): Promise<number> {
  const c = await connect(server)
  try {
    return Number((await c.stats()).get(name))
  } finally {
    await c.close()
  }
}

/** Writes counted on a server: every set/add that reached it (stored or not) and every delete. */
export async function writesOn(address: string): Promise<number> {
  return (await stat(address, 'cmd_set')) + (await stat(address, 'delete_hits')) + (await stat(address, 'delete_misses'))
}

/** One connection per server, by address, closed together. */
export class Conns {
  private readonly map = new Map<string, MetaConnection>()

  async get(address: string): Promise<MetaConnection> {
    let c = this.map.get(address)
    if (c === undefined || c.closed) {
      c = await connect(address)
      this.map.set(address, c)
    }
    return c
  }

  async close(): Promise<void> {
    await Promise.all([...this.map.values()].map((c) => c.close().catch(() => undefined)))
    this.map.clear()
  }
}

/** Where each key is found now: key hex → addresses holding it. */
export async function locateAll(addresses: readonly string[], keys: readonly Buffer[]): Promise<Map<string, string[]>> {
  const found = new Map<string, string[]>()
  for (const a of addresses) {
    const c = await connect(a)
    try {
      for (const hex of (await getAll(c, keys)).keys()) {
        const list = found.get(hex) ?? []
        list.push(a)
        found.set(hex, list)
      }
    } finally {
      await c.close()
    }
  }
  return found
}

export function keysOf(prefix: string, n: number): Buffer[] {
  return Array.from({ length: n }, (_, i) => Buffer.from(`${prefix}${i}`))
}

/**
 * The pool file, `pool show` and `status` say what the drain's result says: the server's state,
 * its record's figures, and whether a change is still in progress. Waits `settleMs` first, so
 * that a save landing after the end would be caught.
 */
export async function assertPoolAgrees(pool: TestPool, r: DrainResult, settleMs = 1500): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, settleMs))
  const s = pool.server(r.server)
  assert.equal(s.state, r.state, 'pool file state = result state')
  if (!r.dryRun) {
    assert.equal(s.transition?.keysAtStart, r.keysAtStart, 'pool file keysAtStart = result')
    assert.equal(s.transition?.moved, r.moved, 'pool file moved = result')
    assert.equal(s.transition?.inPlace, r.inPlace, 'pool file inPlace = result')
  }
  const show = await runCli(['pool', 'show', '--pool', pool.file, '--json'])
  assert.equal(show.code, 0, show.stderr)
  const shown = (show.json.result.pool.servers as { address: string; state: string }[]).find((x) => x.address === r.server)
  assert.equal(shown?.state, r.state, 'pool show state = result state')
  assert.equal(show.json.result.change !== undefined, r.state === 'deactivating', 'pool show reports a change in progress exactly while the server is deactivating')
  const status = await runCli(['status', '--pool', pool.file, '--json'])
  assert.equal(status.code, 0, status.stderr)
  assert.equal((status.json.result.servers as { address: string; state: string }[]).find((x) => x.address === r.server)?.state, r.state, 'status state = result state')
  assert.equal(status.json.result.change !== undefined, r.state === 'deactivating', 'status reports a change in progress exactly while the server is deactivating')
}
