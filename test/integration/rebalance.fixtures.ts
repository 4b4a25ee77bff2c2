/**
 * Fixtures of the rebalance tests: a pool file over real servers with spare servers to add,
 * keys written where the pool's client would put them, and the checks every rebalance test
 * makes (every key at its owner under the final pool, nowhere else, intact).
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { poolPlacement, locateKey } from '../../src/core/pool/placement.js'
import { parsePoolText } from '../../src/core/pool/validate.js'
import type { Pool } from '../../src/core/pool/model.js'
import type { RebalanceOptions } from '../../src/core/jobs/rebalance.js'
import type { PoolEdits } from '../../src/core/pool/rebalance-target.js'
import { Conns, drainOptions, getAll, setAll, stat, type Item, type TestPool } from './drain.fixtures.js'

export function edits(e: Partial<PoolEdits>): PoolEdits {
  return { add: [], remove: [], weight: [], ...e }
}

export function rebalanceOptions(pool: TestPool, e: Partial<PoolEdits>, extra: Partial<RebalanceOptions> = {}): RebalanceOptions {
  // The drain tests' job options (unthrottled, no client grace, spool in the test's directory), without a server.
  const { server: _server, waitForSwitch: _wait, onEvent: _on, ...job } = drainOptions(pool, '')
  return { ...job, edits: edits(e), ...extra }
}

export function readPool(file: string): Pool {
  return parsePoolText(readFileSync(file, 'utf8'), file)
}

/** `n` items with varied flags and TTLs (none, short, over 30 days), each written at its chain under `pool`. */
export async function seed(conns: Conns, pool: Pool, n: number, prefix = 'k:'): Promise<Item[]> {
  const pp = poolPlacement(pool)
  const items: Item[] = []
  const now = Number((await (await conns.get(pp.servers[0]!.address)).stats()).get('time'))
  for (let i = 0; i < n; i++) {
    items.push({
      key: Buffer.from(`${prefix}${i}`),
      value: Buffer.from(`value-${i}-`.repeat(1 + (i % 5))),
      flags: i % 7 === 0 ? 0xffffffff : i % 3,
      ttl: [0, 5000, now + 40 * 86400][i % 3]!,
    })
  }
  const byServer = new Map<string, Item[]>()
  for (const it of items) {
    for (const s of locateKey(pp, it.key.toString()).chain) {
      const list = byServer.get(s) ?? []
      list.push(it)
      byServer.set(s, list)
    }
  }
  for (const [s, list] of byServer) await setAll(await conns.get(s), list)
  seededAt.set(items, Date.now())
  return items
}

/** When each item set was written: a TTL checked later has run down by the time elapsed since. */
const seededAt = new WeakMap<readonly Item[], number>()

export const expectedTtl = (i: number): number => [-1, 5000, 40 * 86400][i % 3]!

/**
 * Every item is at each server of its chain under `pool` (found with the library's locate), with
 * its value, flags and TTL, and on no other server of `servers`.
 */
export async function assertPlaced(conns: Conns, pool: Pool, items: readonly Item[], servers: readonly string[]): Promise<void> {
  const pp = poolPlacement(pool)
  const keys = items.map((it) => it.key)
  const found = new Map<string, Map<string, Awaited<ReturnType<typeof getAll>> extends Map<string, infer V> ? V : never>>()
  for (const s of servers) found.set(s, await getAll(await conns.get(s), keys))
  for (const [i, it] of items.entries()) {
    const chain = locateKey(pp, it.key.toString()).chain
    for (const s of servers) {
      const got = found.get(s)!.get(it.key.toString('hex'))
      if (!chain.includes(s)) {
        assert.equal(got, undefined, `${it.key} is still on ${s}, which does not own it (chain ${chain.join(', ')})`)
        continue
      }
      assert.ok(got, `${it.key} missing at ${s} (chain ${chain.join(', ')})`)
      assert.deepEqual(got.value, it.value, `${it.key} value at ${s}`)
      assert.equal(got.flags, it.flags, `${it.key} flags at ${s}`)
      const want = expectedTtl(i)
      if (want === -1) assert.equal(got.ttl, -1, `${it.key} TTL at ${s}`)
      else {
        // Remaining TTL: what was written, less the time since (a loaded machine makes that long).
        const elapsed = Math.ceil((Date.now() - (seededAt.get(items) ?? Date.now())) / 1000)
        assert.ok(got.ttl <= want + 1 && got.ttl >= want - elapsed - 2, `${it.key}: TTL ${got.ttl} at ${s}, expected ${want} less the ${elapsed} s since it was written`)
      }
    }
  }
}

/** Keys whose owner differs between two pools (replicas 1). */
export function changedOwners(from: Pool, to: Pool, items: readonly Item[]): Map<string, number> {
  const a = poolPlacement(from)
  const b = poolPlacement(to)
  const perSource = new Map<string, number>()
  for (const it of items) {
    const was = locateKey(a, it.key.toString()).server
    if (was !== locateKey(b, it.key.toString()).server) perSource.set(was, (perSource.get(was) ?? 0) + 1)
  }
  return perSource
}

/** get_hits of each server (mg counts there; metadump, ms and md do not). */
export async function getHits(servers: readonly string[]): Promise<Map<string, number>> {
  return new Map(await Promise.all(servers.map(async (s) => [s, await stat(s, 'get_hits')] as [string, number])))
}
