/**
 * Lazy migration off a deactivating server: keys seeded by raw writes at their OLD owner (the
 * placement including the deactivating server) are read through, moved (present at the new
 * owner with their flags and TTL, gone from the old one), counted, and reported to the CLI.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { PoolClient, sumClientMigrations, type MigratedEvent } from '../../src/core/client/index.js'
import { locateKey, poolPlacement } from '../../src/core/pool/placement.js'
import { parsePoolText } from '../../src/core/pool/validate.js'
import type { Pool } from '../../src/core/pool/model.js'
import { rawCommand, startMemcached, type MemcachedServer } from '../helpers/memcached.js'

interface RawItem {
  value: string
  flags: number
  ttl: number
}

async function rawGetMany(address: string, keys: readonly string[]): Promise<(RawItem | undefined)[]> {
  const reply = await rawCommand(address, keys.map((k) => `mg ${k} v f t\r\n`).join('') + 'mn\r\n')
  const out: (RawItem | undefined)[] = []
  let pos = 0
  while (out.length < keys.length) {
    const eol = reply.indexOf('\r\n', pos)
    assert.ok(eol >= 0, `truncated reply from ${address}`)
    const line = reply.slice(pos, eol)
    pos = eol + 2
    const m = /^VA (\d+) f(\d+) t(-?\d+)/.exec(line)
    if (m === null) {
      assert.equal(line, 'EN', `unexpected reply ${line}`)
      out.push(undefined)
    } else {
      out.push({ value: reply.slice(pos, pos + Number(m[1])), flags: Number(m[2]), ttl: Number(m[3]) })
      pos += Number(m[1]) + 2
    }
  }
  return out
}

async function rawGet(address: string, key: string): Promise<RawItem | undefined> {
  return (await rawGetMany(address, [key]))[0]
}

/** Raw `ms` of each key at the given server (how another client, or the data before the drain, put it there). */
async function rawSetMany(address: string, items: readonly { key: string; value: string; flags?: number; ttl?: number }[]): Promise<void> {
  const text = items.map((i) => `ms ${i.key} ${Buffer.byteLength(i.value)} F${i.flags ?? 0} T${i.ttl ?? 0} q\r\n${i.value}\r\n`).join('') + 'mn\r\n'
  assert.equal(await rawCommand(address, text), 'MN\r\n')
}

const STARTED = '2025-01-01T00:00:00.000Z'

function poolText(servers: readonly MemcachedServer[], hash: string, deactivating: number, startedAt = STARTED): string {
  return (
    JSON.stringify(
      {
        hash,
        servers: servers.map((s, i) =>
          i === deactivating
            ? { address: s.address, state: 'deactivating', transition: { startedAt, keysAtStart: 100, threshold: 0.95 } }
            : { address: s.address },
        ),
      },
      null,
      2,
    ) + '\n'
  )
}

/** Where the key lived before the drain: the owner over active + deactivating servers. */
function oldOwner(pool: Pool, key: string): string {
  return locateKey(poolPlacement(pool, pool.servers.filter((s) => s.state !== 'removed')), key).server
}

for (const hash of ['php-memcached-libketama', 'memjs']) {
  describe(`deactivating server (${hash})`, () => {
    let servers: MemcachedServer[] = []
    let dir: string
    let poolFile: string
    let pool: Pool
    let client: PoolClient
    const migrated: MigratedEvent[] = []
    const KEYS = Array.from({ length: 300 }, (_, i) => `mig:${i}`)
    let moving: string[] = []

    before(async () => {
      servers = await Promise.all([0, 1, 2].map(() => startMemcached()))
      dir = await mkdtemp(path.join(tmpdir(), 'memdrain-client-'))
      poolFile = path.join(dir, 'memdrain.json')
      const text = poolText(servers, hash, 2)
      await writeFile(poolFile, text)
      pool = parsePoolText(text, poolFile)
      // Seed every key at its old owner, with flags and a TTL, as the application did before the drain.
      for (const s of servers) {
        const mine = KEYS.filter((k) => oldOwner(pool, k) === s.address)
        await rawSetMany(s.address, mine.map((k) => ({ key: k, value: `v-${k}`, flags: 7, ttl: 600 })))
      }
      client = await PoolClient.fromPoolFile(poolFile, { reportInterval: 60 })
      client.on('migrated', (e) => migrated.push(e))
      moving = KEYS.filter((k) => client.locate(k).oldSources.length > 0)
    })
    after(async () => {
      await client.close()
      await Promise.all(servers.map((s) => s.stop()))
      await rm(dir, { recursive: true, force: true })
    })

    it('places keys as if the deactivating server were gone, and knows where they were', () => {
      const deact = servers[2]!.address
      assert.ok(moving.length > 0)
      for (const k of KEYS) {
        const where = client.locate(k)
        assert.ok(!where.chain.includes(deact), 'never a destination')
        assert.deepEqual(where.previousChain, [oldOwner(pool, k)])
        assert.deepEqual(where.oldSources, where.chain[0] === oldOwner(pool, k) ? [] : [oldOwner(pool, k)])
      }
      if (hash === 'php-memcached-libketama') {
        // A ring moves only the deactivating server's keys.
        assert.ok(moving.every((k) => oldOwner(pool, k) === deact))
      } else {
        // Modulo: most keys whose owner changes lived on a server that stays; the client reads those through too.
        const fromStaying = moving.filter((k) => oldOwner(pool, k) !== deact)
        assert.ok(fromStaying.length > moving.length / 2, `${fromStaying.length} of ${moving.length} keys move off a server that stays`)
      }
    })

    it('a read hits through the old owner, moves the item and counts it', async () => {
      const before = client.stats()
      for (const k of KEYS) assert.equal((await client.get(k))?.toString(), `v-${k}`, k)
      await client.settle()
      const after = client.stats()
      assert.equal(after.fallbackHits - before.fallbackHits, moving.length)
      assert.equal(after.migrated - before.migrated, moving.length)
      assert.equal(after.misses, 0)
      const held = new Map<string, Map<string, RawItem | undefined>>()
      for (const s of servers) {
        const items = await rawGetMany(s.address, moving)
        held.set(s.address, new Map(moving.map((k, i) => [k, items[i]])))
      }
      for (const k of moving) {
        const moved = held.get(client.locate(k).chain[0]!)!.get(k)
        assert.equal(moved?.value, `v-${k}`, `${k} at its new owner`)
        assert.equal(moved?.flags, 7, 'flags kept')
        assert.ok(moved !== undefined && moved.ttl > 590 && moved.ttl <= 600, `TTL kept (${moved?.ttl})`)
        assert.equal(held.get(oldOwner(pool, k))!.get(k), undefined, `${k} gone from its old owner`)
      }
      assert.equal(migrated.filter((e) => e.via === 'read').length, moving.length)
      const bySource = new Map<string, number>()
      for (const k of moving) bySource.set(oldOwner(pool, k), (bySource.get(oldOwner(pool, k)) ?? 0) + 1)
      for (const [source, n] of bySource) assert.equal(after.servers[source]?.movedByClient, n)
      // A second read is a plain hit at the new owner.
      for (const k of moving.slice(0, 20)) assert.equal((await client.get(k))?.toString(), `v-${k}`)
      assert.equal(client.stats().fallbackReads, after.fallbackReads)
    })

    it('a key overwritten through the library meanwhile reads back the new value, never the stale one', async () => {
      const k = KEYS.map((_, i) => `stale:${i}`).find((x) => client.locate(x).oldSources.length > 0)!
      const old = oldOwner(pool, k)
      await rawSetMany(old, [{ key: k, value: 'stale' }])
      await client.set(k, 'fresh')
      assert.equal(await rawGet(old, k), undefined, 'the write deleted the old copy')
      assert.equal((await client.get(k))?.toString(), 'fresh')
      assert.ok(migrated.some((e) => e.key === k && e.via === 'write'))
      // Even if the new owner loses it, the stale copy cannot come back.
      await rawCommand(client.locate(k).chain[0]!, `md ${k}\r\nmn\r\n`)
      assert.equal(await client.get(k), undefined)
    })

    it('concurrent reads and writes of keys being moved end with the written values, no stale copy anywhere', async (t) => {
      const keys = Array.from({ length: 600 }, (_, i) => `race:${i}`).filter((x) => client.locate(x).oldSources.length > 0)
      for (const s of servers) {
        const mine = keys.filter((k) => oldOwner(pool, k) === s.address)
        if (mine.length > 0) await rawSetMany(s.address, mine.map((k) => ({ key: k, value: 'old' })))
      }
      // Connections warm (one read through per old owner), so that reads reach the old owners while writes run.
      for (const source of new Set(keys.map((k) => oldOwner(pool, k)))) await client.get(keys.find((k) => oldOwner(pool, k) === source)!)
      await client.settle()
      const before = client.stats()
      // Writes land at varied points of the reads' fallback and moves (read, add, CAS delete).
      await Promise.all(
        keys.flatMap((k, i) => [
          client.get(k),
          client.get(k),
          sleep(i % 4).then(() => client.set(k, `new-${k}`)),
          sleep(i % 3).then(() => client.get(k)),
        ]),
      )
      await client.settle()
      for (const k of keys) assert.equal((await client.get(k))?.toString(), `new-${k}`, k)
      for (const s of servers) {
        const held = await rawGetMany(s.address, keys)
        keys.forEach((k, i) => {
          if (held[i] !== undefined) assert.equal(held[i]!.value, `new-${k}`, `${k} on ${s.address}`)
        })
      }
      const after = client.stats()
      assert.equal(after.migrationFailures, before.migrationFailures)
      t.diagnostic(`fallback reads ${after.fallbackReads - before.fallbackReads}, hits ${after.fallbackHits - before.fallbackHits}, moved ${after.migrated - before.migrated}, by writes ${after.migratedByWrites - before.migratedByWrites}, conflicts withdrawn ${after.migrationConflicts - before.migrationConflicts}`)
    })

    it('a source changed between the read and the delete: the copy is withdrawn, the newer value moves next', async () => {
      const k = Array.from({ length: 200 }, (_, i) => `changed:${i}`).find((x) => client.locate(x).oldSources.length > 0)!
      const source = oldOwner(pool, k)
      const now = client.locate(k).chain[0]!
      await rawSetMany(source, [{ key: k, value: 'first' }])
      // Another writer (a client still on the old pool) replaces the value right after our read.
      const node = (client as unknown as { node(a: string): { readForMove(key: Buffer): Promise<unknown> } }).node(source)
      const read = node.readForMove.bind(node)
      node.readForMove = async (key) => {
        const item = await read(key)
        await rawSetMany(source, [{ key: k, value: 'second' }])
        node.readForMove = read
        return item
      }
      const conflicts = client.stats().migrationConflicts
      assert.equal((await client.get(k))?.toString(), 'first', 'the value as read')
      await client.settle()
      assert.equal(client.stats().migrationConflicts, conflicts + 1)
      assert.equal(await rawGet(now, k), undefined, 'the copy of the older value was withdrawn')
      assert.equal((await rawGet(source, k))?.value, 'second', 'the newer value stays at the source')
      assert.equal((await client.get(k))?.toString(), 'second')
      await client.settle()
      assert.equal((await rawGet(now, k))?.value, 'second')
      assert.equal(await rawGet(source, k), undefined)
    })

    it('add sees a copy still at the old owner; delete and touch reach it too', async () => {
      const keys = Array.from({ length: 200 }, (_, i) => `ops:${i}`).filter((x) => client.locate(x).oldSources.length > 0)
      const [a, d, t] = keys
      for (const k of [a!, d!, t!]) await rawSetMany(oldOwner(pool, k), [{ key: k, value: `old-${k}`, ttl: 100 }])

      assert.equal(await client.add(a!, 'new'), false, 'the key exists (at its old owner)')
      assert.equal((await client.get(a!))?.toString(), `old-${a}`)
      assert.equal((await rawGet(client.locate(a!).chain[0]!, a!))?.value, `old-${a}`, 'moved by the add')
      assert.equal(await rawGet(oldOwner(pool, a!), a!), undefined)

      assert.equal(await client.delete(d!), true)
      assert.equal(await rawGet(oldOwner(pool, d!), d!), undefined)
      assert.equal(await client.get(d!), undefined)

      assert.equal(await client.touch(t!, 5000), true)
      const touched = await rawGet(client.locate(t!).chain[0]!, t!)
      assert.ok(touched !== undefined && touched.ttl > 4990, `moved and touched (ttl ${touched?.ttl})`)
      assert.equal(await rawGet(oldOwner(pool, t!), t!), undefined)
    })

    it('reports its counts beside the pool file, where sumClientMigrations finds them', async () => {
      await client.flushReport()
      const reportDir = `${poolFile}.clients`
      const files = await readdir(reportDir)
      assert.equal(files.length, 1)
      assert.equal(path.join(reportDir, files[0]!), client.reportFile)
      const doc = JSON.parse(await readFile(client.reportFile!, 'utf8')) as { moved: Record<string, number>; transitions: Record<string, string> }
      const sums = await sumClientMigrations(poolFile)
      const stats = client.stats()
      for (const s of servers) {
        assert.equal(sums.get(s.address) ?? 0, stats.servers[s.address]!.movedByClient, s.address)
        assert.equal(doc.moved[s.address] ?? 0, stats.servers[s.address]!.movedByClient)
      }
      assert.equal(doc.transitions[servers[2]!.address], STARTED)
      assert.equal(
        [...sums.values()].reduce((a, b) => a + b, 0),
        stats.migrated + stats.migratedByWrites,
      )
    })
  })
}

describe('migration off', () => {
  it('with migrate: false a deactivating server is simply not used', async () => {
    const servers = await Promise.all([0, 1].map(() => startMemcached()))
    const pool = parsePoolText(poolText(servers, 'php-memcached-libketama', 1), 'test')
    const client = new PoolClient(pool, { migrate: false })
    try {
      const k = Array.from({ length: 100 }, (_, i) => `off:${i}`).find((x) => oldOwner(pool, x) === servers[1]!.address)!
      await rawSetMany(servers[1]!.address, [{ key: k, value: 'old' }])
      assert.equal(client.locate(k).previousChain, undefined)
      assert.equal(await client.get(k), undefined)
      assert.equal((await rawGet(servers[1]!.address, k))?.value, 'old')
    } finally {
      await client.close()
      await Promise.all(servers.map((s) => s.stop()))
    }
  })
})
