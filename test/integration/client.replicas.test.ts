/**
 * PoolClient with replicas on real memcached servers: writes land on the whole chain, reads
 * survive a stopped server, read repair refills a server that came back empty, write quorum.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import { PoolClient, isPoolClientError, type DownEvent, type RepairEvent } from '../../src/core/client/index.js'
import { validatePool } from '../../src/core/pool/validate.js'
import type { Pool } from '../../src/core/pool/model.js'
import { rawCommand, startMemcached, type MemcachedServer } from '../helpers/memcached.js'

/** The values servers hold for `keys` (one pipelined raw `mg` per key, ended by `mn`); undefined where absent. */
async function rawGetMany(address: string, keys: readonly string[]): Promise<(string | undefined)[]> {
  const reply = await rawCommand(address, keys.map((k) => `mg ${k} v\r\n`).join('') + 'mn\r\n')
  const out: (string | undefined)[] = []
  let pos = 0
  while (out.length < keys.length) {
    const eol = reply.indexOf('\r\n', pos)
    assert.ok(eol >= 0, `truncated reply from ${address}: ${JSON.stringify(reply.slice(pos, pos + 80))}`)
    const line = reply.slice(pos, eol)
    pos = eol + 2
    const m = /^VA (\d+)/.exec(line)
    if (m === null) {
      assert.equal(line, 'EN', `unexpected reply ${line}`)
      out.push(undefined)
    } else {
      out.push(reply.slice(pos, pos + Number(m[1])))
      pos += Number(m[1]) + 2
    }
  }
  return out
}

async function rawGet(address: string, key: string): Promise<string | undefined> {
  return (await rawGetMany(address, [key]))[0]
}

function poolOf(servers: readonly MemcachedServer[], hash: string, replicas: number): Pool {
  return validatePool({ hash, replicas, servers: servers.map((s) => ({ address: s.address })) }, 'test')
}

const KEYS = Array.from({ length: 60 }, (_, i) => `rep:${i}`)

for (const replicas of [2, 3]) {
  describe(`replicas ${replicas}`, () => {
    let servers: MemcachedServer[] = []
    let client: PoolClient
    const downs: DownEvent[] = []
    const repairs: RepairEvent[] = []

    before(async () => {
      servers = await Promise.all([0, 1, 2, 3].map(() => startMemcached()))
      client = new PoolClient(poolOf(servers, 'php-memcached-libketama', replicas), { retryAfter: 0.2, timeout: 0.5 })
      client.on('down', (e) => downs.push(e))
      client.on('repair', (e) => repairs.push(e))
    })
    after(async () => {
      await client.close()
      await Promise.all(servers.map((s) => s.stop()))
    })

    it('writes land on every link of the chain and nowhere else', async () => {
      await Promise.all(KEYS.map((k) => client.set(k, `v-${k}`)))
      const held = await Promise.all(servers.map((s) => rawGetMany(s.address, KEYS)))
      for (const [i, k] of KEYS.entries()) {
        const { chain } = client.locate(k)
        assert.equal(chain.length, replicas)
        servers.forEach((s, j) => assert.equal(held[j]![i], chain.includes(s.address) ? `v-${k}` : undefined, `${k} on ${s.address}`))
        assert.equal((await client.get(k))?.toString(), `v-${k}`)
      }
    })

    it('with one server stopped, reads still hit and writes land on the rest of the chain', async () => {
      const victim = servers[0]!
      await victim.stop()
      for (const k of KEYS) assert.equal((await client.get(k))?.toString(), `v-${k}`, k)
      assert.equal(downs.filter((d) => d.server === victim.address).length, 1, 'one down event')
      assert.equal(client.stats().servers[victim.address]?.state, 'down')
      const fresh = Array.from({ length: 30 }, (_, i) => `rep:new:${i}`)
      await Promise.all(fresh.map((k) => client.set(k, `n-${k}`)))
      for (const s of servers.slice(1)) {
        const held = await rawGetMany(s.address, fresh)
        fresh.forEach((k, i) => assert.equal(held[i], client.locate(k).chain.includes(s.address) ? `n-${k}` : undefined, `${k} on ${s.address}`))
      }
      for (const k of fresh) assert.equal((await client.get(k))?.toString(), `n-${k}`)
    })

    it('after the server restarts empty, read repair refills what is read', async () => {
      const victim = servers[0]!
      await victim.restart()
      await sleep(250) // past retryAfter: the next operation probes it
      for (const k of KEYS) assert.equal((await client.get(k))?.toString(), `v-${k}`, k)
      await client.settle()
      assert.equal(client.stats().servers[victim.address]?.state, 'up')
      // Sequential reads ask the chain in order: the restarted server is repaired where it comes
      // before the link that hit, i.e. where it is the first link.
      const first = KEYS.filter((k) => client.locate(k).chain[0] === victim.address)
      assert.ok(first.length > 0, 'some keys have the restarted server first')
      assert.deepEqual(await rawGetMany(victim.address, first), first.map((k) => `v-${k}`))
      assert.ok(repairs.some((r) => r.to.includes(victim.address)))
      assert.ok(client.stats().repairs >= first.length)
    })

    it('parallel reads answer with the first hit and repair every link that missed', async () => {
      const parallel = new PoolClient(client.pool, { parallelReads: true })
      try {
        // Every link full again (the previous test left copies missing on the first restart), then another one restarts empty.
        await Promise.all(KEYS.map((k) => client.set(k, `v-${k}`)))
        const victim = servers[1]!
        await victim.restart()
        const onVictim = KEYS.filter((k) => client.locate(k).chain.includes(victim.address))
        assert.ok(onVictim.length > 0)
        for (const k of onVictim) assert.equal((await parallel.get(k))?.toString(), `v-${k}`)
        await parallel.settle()
        assert.deepEqual(await rawGetMany(victim.address, onVictim), onVictim.map((k) => `v-${k}`))
      } finally {
        await parallel.close()
      }
    })

    it('delete removes the key from the whole chain; add stores only when absent', async () => {
      const k = KEYS[0]!
      assert.equal(await client.delete(k), true)
      for (const s of servers) assert.equal(await rawGet(s.address, k), undefined)
      assert.equal(await client.delete(k), false)
      assert.equal(await client.add(k, 'first'), true)
      assert.equal(await client.add(k, 'second'), false)
      for (const address of client.locate(k).chain) assert.equal(await rawGet(address, k), 'first')
      assert.equal((await client.get(k))?.toString(), 'first')
    })
  })
}

describe('write quorum', () => {
  let servers: MemcachedServer[] = []
  before(async () => {
    servers = await Promise.all([0, 1, 2].map(() => startMemcached()))
  })
  after(async () => {
    await Promise.all(servers.map((s) => s.stop()))
  })

  it('resolves once writeQuorum links answered, without waiting for a hung one', async () => {
    const pool = poolOf(servers, 'php-memcached-libketama', 3)
    const client = new PoolClient(pool, { writeQuorum: 2, timeout: 1, retryAfter: 30 })
    try {
      await client.set('q:warm', 'x') // connections open before the pause
      servers[2]!.pause()
      const started = Date.now()
      await client.set('q:key', 'quorum')
      const took = Date.now() - started
      assert.ok(took < 500, `set took ${took} ms; the hung server's timeout is 1000 ms`)
      assert.equal(await rawGet(servers[0]!.address, 'q:key'), 'quorum')
      assert.equal(await rawGet(servers[1]!.address, 'q:key'), 'quorum')
      await client.settle() // the hung link times out in the background and is marked down
      assert.equal(client.stats().servers[servers[2]!.address]?.state, 'down')
    } finally {
      if (servers[2]!.running) servers[2]!.resume()
      await client.close()
    }
  })

  it('rejects with WRITE_FAILED and every reply when the quorum cannot be met', async () => {
    const pool = poolOf(servers, 'php-memcached-libketama', 3)
    const client = new PoolClient(pool, { writeQuorum: 3, retryAfter: 30 })
    try {
      await servers[2]!.stop()
      await assert.rejects(client.set('q:other', 'v'), (err: unknown) => {
        assert.ok(isPoolClientError(err, 'WRITE_FAILED'), String(err))
        assert.equal(err.replies.length, 3)
        assert.equal(err.replies.filter((r) => r.ok).length, 2)
        assert.equal(err.replies.find((r) => !r.ok)?.server, servers[2]!.address)
        return true
      })
    } finally {
      await client.close()
    }
  })
})
