/**
 * Topology switches: the client notices a changed pool file (rewritten atomically, as the CLI
 * does) within ~1-2 s, switches atomically, lets operations in flight finish on the old
 * topology, and keeps the old one when the new file is invalid.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { PoolClient, type ErrorContext, type TopologyEvent } from '../../src/core/client/index.js'
import { writeFileAtomic } from '../../src/core/pool/atomic-write.js'
import { rawCommand, startMemcached, type MemcachedServer } from '../helpers/memcached.js'

function poolText(entries: readonly { address: string; state?: string }[], hash = 'php-memcached-libketama'): string {
  return JSON.stringify({ hash, servers: entries }, null, 2) + '\n'
}

/**
 * Waits for `p`, failing after `ms`. The client's watch and timers do not keep the process alive
 * (a library must not), so a test waiting only on them needs a timer of its own.
 */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)))])
  } finally {
    clearTimeout(timer)
  }
}

describe('topology switch on a pool-file change', () => {
  let servers: MemcachedServer[] = []
  let dir: string
  let poolFile: string

  before(async () => {
    servers = await Promise.all([0, 1, 2].map(() => startMemcached()))
    dir = await mkdtemp(path.join(tmpdir(), 'memdrain-topology-'))
    poolFile = path.join(dir, 'memdrain.json')
  })
  after(async () => {
    for (const s of servers) if (s.running) s.resume()
    await Promise.all(servers.map((s) => s.stop()))
    await rm(dir, { recursive: true, force: true })
  })

  it('switches within 2 s of an atomic rewrite, and new operations use the new pool', async (t) => {
    const [a, b, c] = servers as [MemcachedServer, MemcachedServer, MemcachedServer]
    await writeFile(poolFile, poolText([{ address: a.address }, { address: b.address }]))
    const client = await PoolClient.fromPoolFile(poolFile, { checkInterval: 1 })
    try {
      const firstRevision = client.revision
      const keys = Array.from({ length: 100 }, (_, i) => `topo:${i}`)
      assert.ok(keys.every((k) => client.locate(k).chain[0] !== c.address))

      const switched = once(client, 'topology') as Promise<[TopologyEvent]>
      const started = Date.now()
      await writeFileAtomic(poolFile, poolText([{ address: a.address }, { address: b.address }, { address: c.address }]))
      const [event] = await within(switched, 3000, 'topology event')
      const took = Date.now() - started
      t.diagnostic(`switched ${took} ms after the rewrite`)
      assert.ok(took < 2000, `switched after ${took} ms`)
      assert.equal(event.previousRevision, firstRevision)
      assert.equal(event.revision, client.revision)
      assert.deepEqual(event.active, [a.address, b.address, c.address])

      const onC = keys.filter((k) => client.locate(k).chain[0] === c.address)
      assert.ok(onC.length > 0, 'the third server owns keys now')
      await client.set(onC[0]!, 'on-c')
      assert.match(await rawCommand(c.address, `mg ${onC[0]} v\r\nmn\r\n`), /^VA 4\r\non-c\r\n/)
      assert.equal(client.stats().topologySwitches, 1)

      // The CLI rewrites the file with progress figures during a drain: same layout, no switch.
      let switches = 0
      client.on('topology', () => switches++)
      const text = JSON.stringify({ hash: 'php-memcached-libketama', servers: [a.address, b.address, c.address] }, null, 4)
      await writeFileAtomic(poolFile, text)
      await client.checkPoolFile()
      assert.notEqual(client.revision, event.revision, 'the new revision is taken')
      assert.equal(switches, 0)
      assert.equal(client.stats().topologySwitches, 1)
    } finally {
      await client.close()
    }
  })

  it('notices a change through the periodic check alone', async () => {
    const [a, b] = servers as [MemcachedServer, MemcachedServer]
    await writeFile(poolFile, poolText([{ address: a.address }]))
    const client = await PoolClient.fromPoolFile(poolFile, { checkInterval: 0.3 })
    try {
      // Simulate a file system where fs.watch says nothing: stop the watch, keep the timer.
      ;(client as unknown as { watcher: { watcher?: { close(): void } } }).watcher.watcher?.close()
      const switched = once(client, 'topology')
      await writeFileAtomic(poolFile, poolText([{ address: a.address }, { address: b.address }]))
      await within(switched, 1500, 'periodic check')
      assert.equal(client.pool.servers.length, 2)
    } finally {
      await client.close()
    }
  })

  it('an operation in flight finishes on the old topology', async () => {
    const [a, b] = servers as [MemcachedServer, MemcachedServer]
    await writeFile(poolFile, poolText([{ address: a.address }, { address: b.address }]))
    const client = await PoolClient.fromPoolFile(poolFile, { timeout: 5 })
    try {
      const k = Array.from({ length: 100 }, (_, i) => `flight:${i}`).find((x) => client.locate(x).chain[0] === a.address)!
      await client.set(k, 'from-a')
      a.pause()
      const inFlight = client.get(k)
      await sleep(50)
      const switched = once(client, 'topology')
      // `a` leaves the pool while the read waits on it.
      await writeFileAtomic(poolFile, poolText([{ address: a.address, state: 'removed' }, { address: b.address }]))
      await within(switched, 3000, 'topology event')
      assert.deepEqual(client.locate(k).chain, [b.address])
      a.resume()
      assert.equal((await inFlight)?.toString(), 'from-a', 'answered by the server of the old topology')
      await client.settle()
      assert.equal(await client.get(k), undefined, 'new reads go to the new owner')
      assert.ok(!(a.address in client.stats().servers))
    } finally {
      if (a.running) a.resume()
      await client.close()
    }
  })

  it('an invalid pool file is reported once and the current topology kept', async () => {
    const [a] = servers as [MemcachedServer]
    await writeFile(poolFile, poolText([{ address: a.address }]))
    const client = await PoolClient.fromPoolFile(poolFile, { checkInterval: 0.2 })
    const errors: [Error, ErrorContext][] = []
    client.on('error', (err, ctx) => errors.push([err, ctx]))
    try {
      const revision = client.revision
      await writeFileAtomic(poolFile, '{"hash": "no-such-hash", "servers": []}\n')
      await sleep(700)
      assert.equal(client.revision, revision)
      assert.equal(errors.length, 1, 'reported once, not at every check')
      assert.equal(errors[0]![1].during, 'topology')
      assert.equal((errors[0]![0] as { code?: string }).code, 'POOL_INVALID')
      await client.set('still', 'works')
      assert.equal((await client.get('still'))?.toString(), 'works')
    } finally {
      await client.close()
    }
  })

  it('updatePool switches without a file', async () => {
    const [a, b] = servers as [MemcachedServer, MemcachedServer]
    const { parsePoolText } = await import('../../src/core/pool/validate.js')
    const client = new PoolClient(parsePoolText(poolText([{ address: a.address }]), 'inline'))
    try {
      client.updatePool(parsePoolText(poolText([{ address: a.address }, { address: b.address }]), 'inline'))
      assert.equal(client.pool.servers.length, 2)
      assert.match(client.revision, /^manual-/)
    } finally {
      await client.close()
    }
  })
})
