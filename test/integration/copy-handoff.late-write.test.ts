import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { connect } from 'node:net'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import { SourceFollower } from '../../src/core/engine/follower.js'
import { Refresher } from '../../src/core/handoff/refresher.js'
import { CopyJournal } from '../../src/core/handoff/copy-journal.js'
import { runCatchUp } from '../../src/core/handoff/catch-up.js'
import { MetaPayload, VA } from '../../src/core/protocol/index.js'
import { startMemcached, type MemcachedServer } from '../helpers/memcached.js'
import { startProxy, type TcpProxy } from '../helpers/tcp-proxy.js'
import { Conns } from './drain.fixtures.js'

/**
 * A copy whose answer never came (a transfer add timed out at a destination whose link stalled)
 * may land at any moment later: after the refresher deleted that copy of unknown CAS, and after
 * the delta pass found it absent. Its record must stay "possibly copied" until the catch-up
 * after the switch, which then compares it with the source and deletes the stale value.
 *
 * The late write goes through a proxy that holds it 3 s (the link stall), the refresher and the
 * delta pass talk to the destination directly meanwhile: the order is fixed, not left to chance.
 */
describe('copy hand-off catch-up: a write that lands late; deleted keys invalidated first', () => {
  const servers: MemcachedServer[] = []
  const proxies: TcpProxy[] = []
  const conns = new Conns()
  const dirs: string[] = []
  after(async () => {
    await conns.close()
    await Promise.all([...proxies.map((p) => p.close()), ...servers.map((s) => s.kill())])
    for (const d of dirs) rmSync(d, { recursive: true, force: true })
  })

  async function value(address: string, key: Buffer): Promise<{ value: string; cas: Buffer } | undefined> {
    const p = new MetaPayload()
    p.command('mg', key).flags('v c q').flag('O', 1).end()
    let got: { value: string; cas: Buffer } | undefined
    await (await conns.get(address)).batch(p.noop().take(), (r) => {
      if (r.status === VA) got = { value: r.value!.toString(), cas: Buffer.from(r.flagBytes(0x63)!) }
    })
    return got
  }

  async function set(address: string, key: Buffer, v: string): Promise<void> {
    const p = new MetaPayload()
    p.command('ms', key).size(v.length).flags('q').end(Buffer.from(v))
    await (await conns.get(address)).batch(p.noop().take(), () => undefined)
  }

  it('the refresher and the delta pass keep it possibly copied; the catch-up after the switch deletes the stale value that landed', async () => {
    const [src, dst] = await Promise.all([startMemcached(), startMemcached()])
    servers.push(src, dst)
    const link = await startProxy(dst.address)
    proxies.push(link)
    const dir = mkdtempSync(path.join(tmpdir(), 'memdrain-late-'))
    dirs.push(dir)
    const key = Buffer.from('late:1')
    await set(src.address, key, 'v1')
    const copied = (await value(src.address, key))!

    const journal = CopyJournal.open(path.join(dir, 'j', 'copy.journal'), dst.address)
    const follower = await SourceFollower.start(src.address)
    const refresher = new Refresher({ follower, source: src.address, targets: [dst.address], route: (_k, out, at) => ((out[at] = 0), 1), maxChain: 1, journal })
    await refresher.start()
    try {
      // The transfer: the intent on file first, then the add, which the stalled link holds past any timeout.
      journal.intent(key, 0, copied.cas)
      journal.flush()
      link.delayMs = 3000
      const late = connect({ host: '127.0.0.1', port: link.port })
      await once(late, 'connect')
      let landedAt = 0
      late.on('data', (d: Buffer) => {
        if (d.toString().startsWith('HD')) landedAt = performance.now()
      })
      late.write('ms late:1 2 T0 ME\r\nv1\r\n')
      await sleep(50)
      link.delayMs = 0

      // The application writes the source; the follower sees it, the refresher deletes the copy of unknown CAS.
      await set(src.address, key, 'v2')
      for (let i = 0; i < 200 && follower.pendingCount === 0 && follower.stats.events === 0; i++) await sleep(5)
      await refresher.settle()
      assert.equal(await value(dst.address, key), undefined, 'nothing at the destination yet')
      // The delta pass right before the switch: the copy is absent, its record stays possibly copied.
      const delta = await runCatchUp({ source: src.address, targets: [dst.address], journal, rate: 0, keepUnknown: true })
      const deltaDone = performance.now()
      assert.equal(delta.failed, 0)

      // The stalled write lands: the destination now holds the value the application replaced.
      for (let i = 0; i < 400 && landedAt === 0; i++) await sleep(10)
      assert.ok(landedAt > deltaDone, 'the held add landed after the delta pass')
      assert.equal((await value(dst.address, key))?.value, 'v1')
      late.destroy()

      // The switch, then the catch-up: it compares the possible copy with the source and deletes it.
      const c = await runCatchUp({ source: src.address, targets: [dst.address], journal, rate: 0 })
      assert.equal(c.failed, 0)
      const after = await value(dst.address, key)
      assert.ok(after === undefined || after.value === 'v2', `stale value left at the destination: ${after?.value}`)
    } finally {
      await refresher.stop()
      journal.close()
    }
  })

  it('after the switch, copies of keys deleted at the source are gone before the re-copy pass starts, and the first pass moves no value', async () => {
    const [src, dst] = await Promise.all([startMemcached(), startMemcached()])
    servers.push(src, dst)
    const dir = mkdtempSync(path.join(tmpdir(), 'memdrain-invfirst-'))
    dirs.push(dir)
    const journal = CopyJournal.open(path.join(dir, 'j', 'copy.journal'), dst.address)
    const big = 'x'.repeat(2000)
    const keys = Array.from({ length: 1500 }, (_v, i) => Buffer.from(`inv:${i}`))
    // Copies as the transfer makes them: the value at both, the journal with both CASes.
    const put = new MetaPayload()
    const copy = new MetaPayload()
    for (const [i, k] of keys.entries()) {
      put.command('ms', k).size(big.length).flags('c').flag('O', i).end(Buffer.from(big))
      copy.command('ms', k).size(big.length).flags('c').flag('O', i).end(Buffer.from(big))
    }
    const srcCas: Buffer[] = []
    const dstCas: Buffer[] = []
    await (await conns.get(src.address)).batch(put.noop().take(), (r) => (srcCas[r.opaque] = Buffer.from(r.flagBytes(0x63)!)))
    await (await conns.get(dst.address)).batch(copy.noop().take(), (r) => (dstCas[r.opaque] = Buffer.from(r.flagBytes(0x63)!)))
    for (const [i, k] of keys.entries()) journal.append(k, 0, srcCas[i]!, dstCas[i]!)
    // After the copy: a third deleted at the source, a third changed, spread over the journal.
    const deleted = keys.filter((_k, i) => i % 3 === 0)
    const changed = keys.filter((_k, i) => i % 3 === 1)
    const after = new MetaPayload()
    for (const k of deleted) after.command('md', k).flags('q').end()
    for (const k of changed) after.command('ms', k).size(2).flags('q').end(Buffer.from('v2'))
    await (await conns.get(src.address)).batch(after.noop().take(), () => undefined)

    const sent = async (): Promise<number> => Number((await (await conns.get(src.address)).stats()).get('bytes_written'))
    const before = await sent()
    let probed = -1
    const c = await runCatchUp({
      source: src.address,
      targets: [dst.address],
      journal,
      rate: 4000,
      invalidateFirst: true,
      onInvalidated: async () => {
        probed = (await sent()) - before
        for (const k of deleted) assert.equal(await value(dst.address, k), undefined, `${k} was deleted at the source: gone before the re-copies`)
        let notYet = 0
        for (const k of changed) if ((await value(dst.address, k))?.value === big) notYet++
        assert.equal(notYet, changed.length, 'the re-copy pass has not started')
      },
    })
    journal.close()
    assert.ok(probed >= 0, 'the invalidating pass ran first')
    assert.ok(probed < keys.length * 100, `the invalidating pass read CASes, not values: the source sent ${probed} bytes (values: ${keys.length * big.length})`)
    assert.equal(c.failed, 0)
    assert.equal(c.invalidated, deleted.length)
    assert.equal(c.caughtUp, changed.length)
    assert.equal(c.checked, keys.length, 'each copy counted once over both passes')
    for (const k of changed) assert.equal((await value(dst.address, k))?.value, 'v2')
    for (const k of deleted) assert.equal(await value(dst.address, k), undefined)
  })
})
