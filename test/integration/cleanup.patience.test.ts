import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { MemcachedNode, MetaConnection, parseAddress } from '../../src/core/protocol/index.js'
import { whileNotAnswering } from '../../src/core/engine/engine.js'
import { deleteUnownedKeys } from '../../src/core/handoff/unowned-keys.js'
import { deleteCopies } from '../../src/core/handoff/stale-copies.js'
import { CopyJournal } from '../../src/core/handoff/copy-journal.js'
import { startMemcached, type MemcachedServer } from '../helpers/memcached.js'
import { startProxy, type TcpProxy } from '../helpers/tcp-proxy.js'

/**
 * The clean-up after a switch (rebalance, copy hand-off) deletes on the servers that stay what
 * they no longer own, and the copies they handed over. Both steps can be repeated, so a server
 * that stops answering in the middle of their deletions is waited for (whileNotAnswering) and the
 * step starts again; the attempts' deletions add up. Before: every batch after the cut was counted
 * "failed" (the job ended 68 with keys left) and nothing was tried again.
 *
 * The cut: a proxy in front of a real memcached resets the deleting connection while its batches
 * go (after the dump for the unowned keys; a few ms after it opened for the copies).
 */
const KEYS = 60_000

describe('clean-up after a switch: a server that stops answering mid-deletion', () => {
  let server: MemcachedServer
  let proxy: TcpProxy
  let conn: MetaConnection
  let dir: string

  before(async () => {
    server = await startMemcached()
    conn = await MetaConnection.connect(parseAddress(server.address))
    dir = mkdtempSync(path.join(tmpdir(), 'memdrain-cleanup-'))
  })
  after(async () => {
    await conn.close()
    await server.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  const keysOf = (tag: string): Buffer[] => Array.from({ length: KEYS }, (_, i) => Buffer.from(`${tag}:${i}`))
  const load = async (keys: Buffer[]): Promise<string[]> => {
    const node = MemcachedNode.of(conn)
    const cas: string[] = []
    for (let i = 0; i < keys.length; i += 5000) {
      const r = await node.set(keys.slice(i, i + 5000).map((key) => ({ key, item: { value: Buffer.from('v'), flags: 0, ttl: -1 } })))
      for (const s of r) cas.push(s.stored ? s.cas : 'none')
    }
    return cas
  }
  const left = async (keys: Buffer[]): Promise<number> => {
    const got = await MemcachedNode.of(conn).readForMove(keys)
    return got.filter((g) => g !== undefined).length
  }
  /** Resets every connection `afterMs` after the proxy accepted its `nth` (1-based), once. */
  const cutConnection = (nth: number, afterMs: number): { cut: () => boolean; stop: () => void } => {
    let done = false
    const timer = setInterval(() => {
      if (proxy.accepted < nth) return
      clearInterval(timer)
      setTimeout(() => {
        proxy.dropAll()
        done = true
      }, afterMs)
    }, 1)
    return { cut: () => done, stop: () => clearInterval(timer) }
  }

  it('deleteUnownedKeys: starts again after the cut, deletes every unowned key, counts each once', async () => {
    proxy = await startProxy(server.address)
    try {
      const keys = keysOf('unowned')
      await load(keys)
      // The dump lists the keys (owns is asked for each), then the deletions go, a few hundred ms
      // for 60k keys: the cut comes 30 ms after the dump's last key, once.
      let listed = 0
      let cutAt = -1
      const owns = (): boolean => {
        if (++listed === KEYS)
          setTimeout(() => {
            cutAt = proxy.accepted
            proxy.dropAll()
          }, 30)
        return false
      }
      const into = { deleted: 0, failed: 0 }
      const r = await whileNotAnswering(() => deleteUnownedKeys({ source: proxy.address, owns, spoolDir: dir, into }), 5000)
      assert.ok(cutAt > 0, 'the deleting connection was cut')
      assert.ok(listed < 2 * KEYS, `the second attempt's dump listed only what the first left (${listed - KEYS} keys)`)
      assert.ok(proxy.accepted > cutAt, `a second attempt ran (connections: ${proxy.accepted}, ${cutAt} at the cut)`)
      assert.equal(r, into)
      assert.equal(r.failed, 0)
      assert.equal(await left(keys), 0)
      // Each key once: what the first attempt saw deleted plus what the second found still there
      // (a batch in flight at the cut is deleted unseen: one batch, 500 keys, at most).
      assert.ok(r.deleted <= KEYS && r.deleted >= KEYS - 500, `deleted ${r.deleted}`)
    } finally {
      await proxy.close()
    }
  })

  it('deleteCopies (a server that stays): starts again after the cut, deletes every copy it handed over', async () => {
    proxy = await startProxy(server.address)
    const journal = CopyJournal.open(path.join(dir, 'j', 'copy.journal'), 'test')
    try {
      const keys = keysOf('copies')
      const cas = await load(keys)
      for (let i = 0; i < keys.length; i++) journal.append(keys[i]!, 0, Buffer.from(cas[i]!), Buffer.from('1'))
      journal.flush()
      // Connection 1 is the first attempt's: cut while its batches go.
      const cut = cutConnection(1, 15)
      const into = { deleted: 0, changed: 0, failed: 0 }
      const r = await whileNotAnswering(() => deleteCopies(journal, { kind: 'source', address: proxy.address }, undefined, into), 5000).finally(cut.stop)
      assert.ok(cut.cut(), 'the deleting connection was cut')
      assert.ok(proxy.accepted >= 2, `a second attempt ran (connections: ${proxy.accepted})`)
      assert.equal(r, into)
      assert.equal(r.failed, 0)
      assert.equal(r.changed, 0)
      assert.equal(await left(keys), 0)
      assert.ok(r.deleted <= KEYS && r.deleted >= KEYS - 500, `deleted ${r.deleted}`)
    } finally {
      journal.close()
      await proxy.close()
    }
  })
})
