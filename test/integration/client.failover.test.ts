/**
 * PoolClient with replicas 1: a failed server's keys are not remapped (a miss with an event)
 * unless failover "next"; timeouts mark a server down; it comes back after retryAfter; close()
 * leaves nothing open even with a hung server.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import { PoolClient, isPoolClientError, type DownEvent, type UnavailableEvent, type UpEvent } from '../../src/core/client/index.js'
import { validatePool } from '../../src/core/pool/validate.js'
import type { Pool } from '../../src/core/pool/model.js'
import { rawCommand, startMemcached, type MemcachedServer } from '../helpers/memcached.js'

async function rawGet(address: string, key: string): Promise<string | undefined> {
  const reply = await rawCommand(address, `mg ${key} v\r\nmn\r\n`)
  const m = /^VA (\d+)\r\n/.exec(reply)
  return m === null ? undefined : reply.slice(m[0].length, m[0].length + Number(m[1]))
}

function poolOf(servers: readonly MemcachedServer[], hash = 'memjs'): Pool {
  return validatePool({ hash, servers: servers.map((s) => ({ address: s.address })) }, 'test')
}

/** A key owned by `address` under the client's placement. */
function keyOwnedBy(client: PoolClient, address: string, prefix: string): string {
  for (let i = 0; ; i++) if (client.locate(`${prefix}${i}`).chain[0] === address) return `${prefix}${i}`
}

describe('replicas 1, failover "none" (default)', () => {
  let servers: MemcachedServer[] = []
  before(async () => {
    servers = await Promise.all([0, 1, 2].map(() => startMemcached()))
  })
  after(async () => {
    await Promise.all(servers.map((s) => s.stop()))
  })

  it('a stopped server is a miss with an event, never remapped; it comes back after retryAfter', async () => {
    // A generous timeout: the first request after the restart reconnects, on a shared, loaded machine.
    const client = new PoolClient(poolOf(servers), { retryAfter: 0.3, timeout: 3 })
    const downs: DownEvent[] = []
    const ups: UpEvent[] = []
    const unavailable: UnavailableEvent[] = []
    client.on('down', (e) => downs.push(e))
    client.on('up', (e) => ups.push(e))
    client.on('unavailable', (e) => unavailable.push(e))
    try {
      const victim = servers[1]!
      const k = keyOwnedBy(client, victim.address, 'fo:')
      const other = keyOwnedBy(client, servers[0]!.address, 'fo:')
      await client.set(k, 'on-victim')
      await client.set(other, 'elsewhere')
      await victim.stop()

      assert.equal(await client.get(k), undefined, 'the first failure is a miss')
      assert.equal(downs.length, 1)
      assert.equal(downs[0]!.server, victim.address)
      assert.equal(await client.get(k), undefined, 'skipped while down')
      assert.equal(unavailable.length, 2)
      assert.deepEqual(unavailable[1], { op: 'get', key: k, servers: [victim.address] })
      assert.equal((await client.get(other))?.toString(), 'elsewhere', 'other servers are not affected')

      await assert.rejects(client.set(k, 'nowhere'), (err: unknown) => isPoolClientError(err, 'NO_SERVER_AVAILABLE'))
      for (const s of [servers[0]!, servers[2]!]) assert.equal(await rawGet(s.address, k), undefined, `not remapped to ${s.address}`)

      await victim.restart()
      await sleep(350)
      await client.set(k, 'back')
      assert.equal(ups.length, 1)
      assert.equal(ups[0]!.server, victim.address)
      assert.equal(await rawGet(victim.address, k), 'back', 'the key is where it was')
      assert.equal(client.stats().servers[victim.address]?.state, 'up')
      assert.equal(client.stats().downEvents, 1)
    } finally {
      await client.close()
    }
  })

  it('a hung server times out, is marked down, and close() still ends at once', async () => {
    const client = new PoolClient(poolOf(servers), { timeout: 0.2, retryAfter: 30 })
    const downs: DownEvent[] = []
    client.on('down', (e) => downs.push(e))
    const victim = servers[2]!
    const k = keyOwnedBy(client, victim.address, 'hung:')
    try {
      await client.set(k, 'x')
      victim.pause()
      const started = Date.now()
      assert.equal(await client.get(k), undefined)
      const took = Date.now() - started
      assert.ok(took >= 150 && took < 1000, `timed out after ${took} ms`)
      assert.equal(downs.length, 1)
      assert.equal(downs[0]!.error.name, 'ServerError')
      assert.match(downs[0]!.error.message, /did not answer/)
    } finally {
      const closing = Date.now()
      await client.close()
      assert.ok(Date.now() - closing < 500, 'close() does not wait for the paused server')
      victim.resume()
    }
  })

  it('close() lets the gets and sets already started finish, then closes', async () => {
    const client = new PoolClient(poolOf(servers), { timeout: 5 })
    const victim = servers[1]!
    const k = keyOwnedBy(client, victim.address, 'closing:')
    const k2 = keyOwnedBy(client, victim.address, 'closing-set:')
    await client.set(k, 'before')
    victim.pause()
    try {
      const get = client.get(k)
      const set = client.set(k2, 'during')
      let closed = false
      const closing = client.close().then(() => (closed = true))
      await sleep(100)
      assert.equal(closed, false, 'close() waits for the operations in flight')
      victim.resume()
      assert.equal((await get)?.toString(), 'before')
      await set
      await closing
      assert.equal(await rawGet(victim.address, k2), 'during')
    } finally {
      if (victim.running) victim.resume()
      await client.close()
    }
  })

  it('rejects operations after close() and bad keys, values and expiries with typed errors', async () => {
    const client = new PoolClient(poolOf(servers))
    await assert.rejects(client.get(''), (err: unknown) => isPoolClientError(err, 'KEY_INVALID'))
    await assert.rejects(client.get('k'.repeat(251)), (err: unknown) => isPoolClientError(err, 'KEY_INVALID'))
    await assert.rejects(client.set('k', 42 as unknown as string), (err: unknown) => isPoolClientError(err, 'VALUE_INVALID'))
    await assert.rejects(client.set('k', 'v', { expires: -1 }), (err: unknown) => isPoolClientError(err, 'EXPIRY_INVALID'))
    await assert.rejects(client.touch('k', 1.5), (err: unknown) => isPoolClientError(err, 'EXPIRY_INVALID'))
    // Keys are bytes: a Buffer key and its UTF-8 string are the same key.
    await client.set('clé', Buffer.from([1, 2, 3]))
    assert.deepEqual(await client.get(Buffer.from('clé', 'utf8')), Buffer.from([1, 2, 3]))
    await client.close()
    await assert.rejects(client.get('k'), (err: unknown) => isPoolClientError(err, 'CLIENT_CLOSED'))
  })

  it('a command the server refuses fails the write without marking the server down', async () => {
    const client = new PoolClient(poolOf(servers))
    try {
      await assert.rejects(client.set('too-big', Buffer.alloc(2 * 1024 * 1024)), (err: unknown) => {
        assert.ok(isPoolClientError(err, 'WRITE_FAILED'), String(err))
        assert.match(String(err.replies[0]?.error?.message), /Value too large/)
        return true
      })
      const s = client.stats()
      assert.equal(s.commandErrors, 1)
      assert.equal(s.downEvents, 0)
      await client.set('small', 'ok')
      assert.equal((await client.get('small'))?.toString(), 'ok')
    } finally {
      await client.close()
    }
  })

  it('expiry is in seconds; touch changes it', async () => {
    const client = new PoolClient(poolOf(servers))
    try {
      await client.set('ttl:a', 'short', { expires: 1 })
      await client.set('ttl:b', 'kept', { expires: 1 })
      assert.equal(await client.touch('ttl:b', 100), true)
      assert.equal(await client.touch('ttl:none', 100), false)
      await sleep(2100)
      assert.equal(await client.get('ttl:a'), undefined)
      assert.equal((await client.get('ttl:b'))?.toString(), 'kept')
    } finally {
      await client.close()
    }
  })
})

describe('replicas 1, failover "next"', () => {
  let servers: MemcachedServer[] = []
  before(async () => {
    servers = await Promise.all([0, 1, 2].map(() => startMemcached()))
  })
  after(async () => {
    await Promise.all(servers.map((s) => s.stop()))
  })

  it('remaps a down server\'s keys to the next server, like memjs failover', async () => {
    const client = new PoolClient(poolOf(servers, 'memjs'), { failover: 'next', retryAfter: 30 })
    try {
      const victim = servers[0]!
      const k = keyOwnedBy(client, victim.address, 'next:')
      await victim.stop()
      assert.equal(await client.get(k), undefined) // discovers the failure
      await client.set(k, 'remapped')
      // memjs' own failover goes to (i + 1) mod n: the memjs strategy's chain.
      const next = servers[1]!
      assert.equal(await rawGet(next.address, k), 'remapped')
      assert.equal((await client.get(k))?.toString(), 'remapped')
      assert.ok(client.stats().failovers >= 2)
    } finally {
      await client.close()
    }
  })
})
