import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import { SourceFollower } from '../../src/core/engine/follower.js'
import { MetaPayload } from '../../src/core/protocol/index.js'
import { startMemcached, type MemcachedServer } from '../helpers/memcached.js'
import { Conns } from './drain.fixtures.js'

/** The change-data-capture follower against a real memcached: what it sees, what it reports as lost. */

async function until(what: string, ok: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms
  while (!ok()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`)
    await sleep(5)
  }
}

describe('SourceFollower', () => {
  const servers: MemcachedServer[] = []
  const conns = new Conns()
  const followers: SourceFollower[] = []
  after(async () => {
    await Promise.all(followers.map((f) => f.stop()))
    await conns.close()
    await Promise.all(servers.map((s) => s.kill()))
  })

  it('streams the keys stored (text and meta, binary keys), once each, not failed stores; deletions only where memcached streams them', async () => {
    const s = await startMemcached()
    servers.push(s)
    const f = await SourceFollower.start(s.address)
    followers.push(f)
    const c = await conns.get(s.address)
    const p = new MetaPayload()
    const binary = Buffer.from([0x6b, 0x20, 0xc3, 0xa9, 0x01])
    p.command('ms', Buffer.from('a')).size(1).end(Buffer.from('1'))
    p.command('ms', Buffer.from('a')).size(1).end(Buffer.from('2'))
    p.command('ms', binary).size(1).end(Buffer.from('3'))
    p.command('ms', Buffer.from('exists')).size(1).end(Buffer.from('4'))
    // An add that does not store changes nothing: no event.
    p.command('ms', Buffer.from('exists')).size(1).flags('ME').end(Buffer.from('5'))
    p.command('md', Buffer.from('a')).end()
    await c.batch(p.noop().take(), () => undefined)
    await until('3 keys', () => f.pendingCount >= 3)
    await sleep(50)
    const keys = f.take(100).map((k) => k.toString('hex'))
    const want = [Buffer.from('a'), binary, Buffer.from('exists')].map((k) => k.toString('hex'))
    assert.deepEqual(keys.slice(0, 3).sort(), want.sort())
    if (f.deletions) assert.equal(keys.length, 3, 'a deletion of a pending key does not queue it twice')
    else assert.equal(keys.length, 3)
    assert.equal(f.pendingCount, 0)
    assert.equal(f.takeLoss(), undefined, 'nothing lost')
    const version = (await c.version()).split('.').map(Number)
    const streamsDeletions = version[0]! > 1 || version[1]! > 6 || (version[1] === 6 && version[2]! >= 20)
    assert.equal(f.deletions, streamsDeletions, `memcached ${version.join('.')}`)
  })

  it('under a storm keeps at most maxPending keys and reports a loss instead of queueing without bound', async () => {
    const s = await startMemcached()
    servers.push(s)
    const f = await SourceFollower.start(s.address, { maxPending: 500 })
    followers.push(f)
    const c = await conns.get(s.address)
    const p = new MetaPayload()
    for (let i = 0; i < 5000; i++) p.command('ms', Buffer.from(`storm:${i}`)).size(1).flags('q').end(Buffer.from('x'))
    await c.batch(p.noop().take(), () => undefined)
    await until('a loss', () => f.stats.losses > 0)
    assert.ok(f.pendingCount <= 500, `${f.pendingCount} pending`)
    assert.match(f.takeLoss() ?? '', /more than 500 keys changed|dropped/)
  })

  it('reports events memcached dropped (its log buffer overflowed) as a loss', async () => {
    // A 1 KiB watcher buffer and a burst of writes: memcached drops log lines and counts them.
    const s = await startMemcached({ extraArgs: ['-o', 'watcher_logbuf_size=1'] })
    servers.push(s)
    const f = await SourceFollower.start(s.address, { lossPollMs: 50 })
    followers.push(f)
    const c = await conns.get(s.address)
    const p = new MetaPayload()
    for (let i = 0; i < 50_000; i++) p.command('ms', Buffer.from(`burst:${i}`)).size(1).flags('q').end(Buffer.from('x'))
    await c.batch(p.noop().take(), () => undefined)
    await until('a loss', () => f.stats.losses > 0, 5000)
    assert.match(f.takeLoss() ?? '', /dropped|skipped/)
  })

  it('a watch connection the server drops is a loss, and the follower re-opens it', async () => {
    const s = await startMemcached()
    servers.push(s)
    const f = await SourceFollower.start(s.address, { lossPollMs: 60_000 })
    followers.push(f)
    await s.restart()
    await until('a loss and a reconnect', () => f.stats.reconnects > 0, 8000)
    assert.match(f.takeLoss() ?? '', /closed|re-opened/)
    const c = await conns.get(s.address)
    await c.batch(new MetaPayload().command('ms', Buffer.from('after')).size(1).end(Buffer.from('1')).noop().take(), () => undefined)
    await until('the key written after the reconnect', () => f.pendingCount > 0)
    assert.deepEqual(f.take(10).map(String), ['after'])
  })
})
