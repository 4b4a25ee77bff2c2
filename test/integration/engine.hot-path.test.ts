import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { prepareSourceJob } from '../../src/core/engine/engine.js'
import type { RouteFn } from '../../src/core/engine/transfer.js'
import { MetaConnection, MetaPayload, parseAddress, ERR } from '../../src/core/protocol/index.js'
import { startMemcached, type MemcachedServer } from '../helpers/memcached.js'

/**
 * The engine's hot path on real memcached: each key is routed once (the spool keeps its
 * destinations for the move), and a dump that may repeat keys (an LRU walk) is deduplicated
 * on disk with the same figures as a hash walk that needs no deduplication.
 */

const N = 3000

async function load(address: string): Promise<void> {
  const conn = await MetaConnection.connect(parseAddress(address))
  try {
    const p = new MetaPayload()
    for (let i = 0; i < N; i++) {
      const key = Buffer.from(`k:${i}`)
      p.command('ms', key).size(key.length + 10).flag('F', i).flag('T', i % 2 === 0 ? 0 : 3600).flag('q').end(Buffer.concat([key, Buffer.alloc(10, 0x2e)]))
    }
    let errors = 0
    await conn.batch(p.noop().take(), (r) => {
      if (r.status === ERR) errors++
    })
    assert.equal(errors, 0)
  } finally {
    await conn.close()
  }
}

async function itemCount(address: string): Promise<number> {
  const conn = await MetaConnection.connect(parseAddress(address))
  try {
    return Number((await conn.stats()).get('curr_items'))
  } finally {
    await conn.close()
  }
}

describe('source job hot path', () => {
  const servers: MemcachedServer[] = []
  let spoolDir = ''
  before(async () => {
    spoolDir = mkdtempSync(path.join(tmpdir(), 'memdrain-engine-test-'))
  })
  after(async () => {
    await Promise.all(servers.map((s) => s.kill()))
    rmSync(spoolDir, { recursive: true, force: true })
  })

  for (const dumpMode of ['hash', 'all'] as const) {
    it(`${dumpMode} walk: routes each key once, moves every key to its destination, per-destination figures exact`, async () => {
      const [source, a, b] = await Promise.all([startMemcached({}), startMemcached({}), startMemcached({})])
      servers.push(source!, a!, b!)
      await load(source!.address)
      let routeCalls = 0
      // Entries every pass's dump listed (its 'dumped' event).
      let listed = 0
      // Keys with an even number go to a, odd to b.
      const route: RouteFn = (key, out, offset) => {
        routeCalls++
        out[offset] = Number(key.toString('latin1').slice(2)) % 2
        return 1
      }
      const job = await prepareSourceJob({
        source: source!.address,
        targets: [a!.address, b!.address],
        route,
        maxChain: 1,
        mode: 'move',
        store: 'add',
        order: 'hot-first',
        spoolDir,
        rate: 0,
        bandwidth: 0,
        minTtl: 2,
        minFree: 0.1,
        allowEvictions: false,
        batchSize: 128,
        dumpMode,
        onEvent: (e) => {
          if (e.type === 'dumped') listed += e.entries
        },
      })
      const preflight = job.preflight.map((d) => ({ address: d.address, keys: d.keys }))
      const result = await job.run()
      assert.equal(result.tally.moved, N)
      assert.equal(result.tally.failed, 0)
      // Once per entry a dump listed (over every pass); the move takes the destinations from the spool.
      assert.equal(routeCalls, listed)
      if (dumpMode === 'hash') {
        // A hash walk lists every key once.
        assert.equal(result.keysAtStart, N)
        assert.equal(routeCalls, N)
        assert.deepEqual(preflight, [
          { address: a!.address, keys: N / 2 },
          { address: b!.address, keys: N / 2 },
        ])
      } else {
        // An LRU walk of a freshly loaded server can miss a key its LRU maintainer moves under
        // it (from the HOT list to one already walked; seen once in ~40 runs under load): the
        // next pass finds and moves it (moved is exactly N above). The first dump's counts agree
        // with what it listed.
        assert.ok(result.keysAtStart <= N && result.keysAtStart >= N - 10, `keysAtStart ${result.keysAtStart}`)
        assert.equal(preflight[0]!.keys + preflight[1]!.keys, result.keysAtStart)
      }
      assert.deepEqual(
        result.tally.perDestination.map((d) => d.keys),
        [N / 2, N / 2],
      )
      assert.equal(await itemCount(source!.address), 0)
      assert.equal(await itemCount(a!.address), N / 2)
      assert.equal(await itemCount(b!.address), N / 2)
      // Every key at its destination with its value and flags.
      for (const [t, server] of [a!, b!].entries()) {
        const conn = await MetaConnection.connect(parseAddress(server.address))
        try {
          const p = new MetaPayload()
          for (let i = t; i < N; i += 2) p.command('mg', Buffer.from(`k:${i}`)).flags('v f').flag('O', i).end()
          let found = 0
          await conn.batch(p.noop().take(), (r) => {
            const key = `k:${r.opaque}`
            assert.equal(r.value?.toString('latin1'), `${key}..........`)
            assert.equal(r.flagInt('f'), r.opaque)
            found++
          })
          assert.equal(found, N / 2)
        } finally {
          await conn.close()
        }
      }
    })
  }
})
