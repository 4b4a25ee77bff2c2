import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import {
  expiring,
  HD,
  ITEM_HEADROOM,
  itemCas,
  itemFlags,
  itemTtl,
  MemcachedNode,
  MetaConnection,
  NodeBatch,
  parseAddress,
  RELATIVE_TTL_LIMIT,
  storeMode,
  VA,
  valueFits,
  type MetaReply,
} from '../../src/core/protocol/index.js'
import { rawCommand, startMemcached, type MemcachedServer } from '../helpers/memcached.js'

/** The protocol's node interface (protocol/node.ts) against a real memcached: each operation, and the rules every writer shares. */
describe('MemcachedNode and NodeBatch', () => {
  let server: MemcachedServer
  let conn: MetaConnection
  let node: MemcachedNode
  let n = 0
  const key = (tag: string): Buffer => Buffer.from(`node-test:${tag}:${n++}`)
  const item = (value: string | Buffer, ttl = -1, flags = 0): { value: Buffer; flags: number; ttl: number } => ({
    value: typeof value === 'string' ? Buffer.from(value) : value,
    flags,
    ttl,
  })

  before(async () => {
    server = await startMemcached({ itemSizeMax: '2m' })
    conn = await MetaConnection.connect(parseAddress(server.address))
    node = MemcachedNode.of(conn)
  })
  after(async () => {
    await conn?.close()
    await server?.stop()
  })

  it('limits(): item_size_max and the clock from stats', async () => {
    const limits = await node.limits()
    assert.equal(limits.itemSizeMax, 2 * 1024 * 1024)
    // Same machine, same clock: the offset is rounding only.
    assert.ok(Math.abs(limits.clockOffset) <= 1, `clock offset ${limits.clockOffset}`)
    assert.equal((await node.stats()).get('pid'), String(server.pid))
    assert.equal((await node.stats('settings')).get('item_size_max'), '2097152')
  })

  it('readForMove: value, client flags, remaining TTL and CAS of each key; undefined for a missing one; binary keys too', async () => {
    const a = key('a')
    const binary = Buffer.from([0x00, 0x20, 0x0a, 0xff, 0x41])
    const missing = key('missing')
    assert.deepEqual(
      (await node.set([{ key: a, item: item('alpha', 300, 42) }, { key: binary, item: item('beta') }])).map((r) => r.stored),
      [true, true],
    )
    const [ra, rm, rb] = await node.readForMove([a, missing, binary])
    assert.equal(ra?.value.toString(), 'alpha')
    assert.equal(ra?.flags, 42)
    assert.ok(ra!.ttl > 290 && ra!.ttl <= 300, `ttl ${ra?.ttl}`)
    assert.match(ra!.cas, /^[1-9]\d*$/)
    assert.equal(rm, undefined)
    assert.equal(rb?.value.toString(), 'beta')
    assert.equal(rb?.ttl, -1)
  })

  it('readForMove does not bump the LRU (a move must not warm the source); read does', async () => {
    const k = key('lru')
    await node.set([{ key: k, item: item('v') }])
    const fetched = async (): Promise<string> => (await rawCommand(server.address, `me ${k.toString()}\r\n`)).match(/fetch=(\w+)/)?.[1] ?? '?'
    await node.readForMove([k])
    assert.equal(await fetched(), 'no')
    const b = new NodeBatch()
    b.read(0, k, 0, k.length)
    await b.send(conn, () => undefined)
    assert.equal(await fetched(), 'yes')
  })

  it('add: stores a new key with its CAS; an existing key is left as it is (exists)', async () => {
    const k = key('add')
    const [first] = await node.add([{ key: k, item: item('first') }])
    assert.ok(first?.stored === true && /^\d+$/.test(first.cas), JSON.stringify(first))
    const [second] = await node.add([{ key: k, item: item('second') }])
    assert.deepEqual(second, { stored: false, reason: 'exists' })
    assert.equal((await node.readForMove([k]))[0]?.value.toString(), 'first')
    // The CAS add reported is the one the item has.
    assert.equal((await node.readForMove([k]))[0]?.cas, first.stored ? first.cas : '')
  })

  it('set: replaces what is there', async () => {
    const k = key('set')
    await node.add([{ key: k, item: item('old') }])
    const [r] = await node.set([{ key: k, item: item('new', -1, 7) }])
    assert.equal(r?.stored, true)
    const [got] = await node.readForMove([k])
    assert.equal(got?.value.toString(), 'new')
    assert.equal(got?.flags, 7)
  })

  it('deleteIfCas: deleted at the CAS read, changed (and kept) on a CAS mismatch, gone when absent', async () => {
    const same = key('cas-same')
    const changed = key('cas-changed')
    const gone = key('cas-gone')
    await node.set([{ key: same, item: item('1') }, { key: changed, item: item('2') }])
    const [a, b] = await node.readForMove([same, changed])
    await node.set([{ key: changed, item: item('2, rewritten') }])
    const results = await node.deleteIfCas([
      { key: same, cas: a!.cas },
      { key: changed, cas: Buffer.from(b!.cas) },
      { key: gone, cas: '12345' },
    ])
    assert.deepEqual(results, ['deleted', 'changed', 'gone'])
    const [ga, gb] = await node.readForMove([same, changed])
    assert.equal(ga, undefined)
    assert.equal(gb?.value.toString(), '2, rewritten')
  })

  it('delete: true where the key was there', async () => {
    const k = key('del')
    await node.set([{ key: k, item: item('x') }])
    assert.deepEqual(await node.delete([k, key('never')]), [true, false])
    assert.equal((await node.readForMove([k]))[0], undefined)
  })

  it('item size: the largest value the headroom rule lets through is stored with the longest key; one byte more is refused without sending', async () => {
    const { itemSizeMax } = await node.limits()
    const longKey = Buffer.alloc(250, 0x6b)
    const largest = itemSizeMax - ITEM_HEADROOM
    assert.ok(valueFits(largest, itemSizeMax))
    assert.ok(!valueFits(largest + 1, itemSizeMax))
    const [fits] = await node.set([{ key: longKey, item: item(Buffer.alloc(largest, 0x61)) }])
    assert.equal(fits?.stored, true, 'memcached takes every value valueFits allows')
    const other = key('too-large')
    const [refused] = await node.set([{ key: other, item: item(Buffer.alloc(largest + 1, 0x61)) }])
    assert.deepEqual(refused, { stored: false, reason: 'too-large' })
    assert.equal((await node.readForMove([other]))[0], undefined)
    // Refused among others: the items after it are stored, each result in its place.
    const after = key('after-too-large')
    const mixed = await node.set([{ key: other, item: item(Buffer.alloc(largest + 1, 0x61)) }, { key: after, item: item('fits') }])
    assert.deepEqual(mixed[0], { stored: false, reason: 'too-large' })
    assert.equal(mixed[1]?.stored, true)
    assert.equal((await node.readForMove([after]))[0]?.value.toString(), 'fits')
    // A node that was not asked its limits sends it, and memcached's refusal is an error.
    const blind = MemcachedNode.of(conn)
    await assert.rejects(blind.set([{ key: other, item: item(Buffer.alloc(itemSizeMax + 1, 0x61)) }]), /SERVER_ERROR|CLIENT_ERROR/)
    // The connection is still in step.
    assert.equal((await node.readForMove([longKey]))[0]?.value.length, largest)
  })

  it('the TTL rule: no expiry stays none, relative up to 30 days, absolute beyond, and 0 never becomes immortal', async () => {
    const none = key('ttl-none')
    const short = key('ttl-short')
    const long = key('ttl-long')
    const zero = key('ttl-zero')
    await node.set([
      { key: none, item: item('v', -1) },
      { key: short, item: item('v', 120) },
      { key: long, item: item('v', RELATIVE_TTL_LIMIT + 3600) },
      { key: zero, item: item('v', 0) },
    ])
    const [a, b, c, d] = await node.readForMove([none, short, long, zero])
    assert.equal(a?.ttl, -1)
    assert.ok(b!.ttl > 110 && b!.ttl <= 120, `short ${b?.ttl}`)
    // Sent as an absolute time (a relative T over 30 days would be read as a date in 1970 and expire at once).
    assert.ok(c!.ttl > RELATIVE_TTL_LIMIT + 3590 && c!.ttl <= RELATIVE_TTL_LIMIT + 3601, `long ${c?.ttl}`)
    // 0 remaining means "expires within the second": T1, not T0 (no expiry).
    assert.ok(d === undefined || (d.ttl >= 0 && d.ttl <= 1), `zero ${d?.ttl}`)
    assert.equal(expiring(-1), false)
    assert.equal(expiring(0), true)
    assert.equal(expiring(1), false)
    assert.equal(expiring(5, 10), true)
    assert.equal(expiring(10, 10), false)
  })

  it('NodeBatch: one pipelined batch of every operation, answers matched by id', async () => {
    const k = Array.from({ length: 6 }, (_, i) => key(`batch${i}`))
    await node.set([{ key: k[0]!, item: item('zero', 60, 3) }, { key: k[1]!, item: item('one') }, { key: k[2]!, item: item('two') }])
    const [, one] = await node.readForMove([k[0]!, k[1]!])
    const packed = Buffer.concat(k)
    const start = (i: number): number => k.slice(0, i).reduce((s, b) => s + b.length, 0)
    const b = new NodeBatch()
    const value = Buffer.from('__new__')
    b.readForMove(0, packed, start(0), start(1))
    b.present(1, packed, start(2), start(3))
    b.present(2, packed, start(5), start(6)) // missing: silent
    b.store(storeMode('add', true), 3, packed, start(3), start(4), value, 2, 5, 9, 60, 0) // a value range: "new"
    b.store(storeMode('add'), 4, packed, start(2), start(3), value, 0, value.length, 0, -1, 0) // exists: NS
    b.store(storeMode('set', true), 5, packed, start(1), start(2), value, 0, 3, 0, -1, 0, '1') // set-if-CAS, wrong CAS: EX
    b.store(storeMode('set'), 6, packed, start(4), start(5), value, 0, 3, 0, -1, 0, one!.cas) // set-if-CAS on a missing key: NF
    b.deleteIfCas(7, packed, start(1), start(2), Buffer.from(`x${one!.cas}`), 1) // the right CAS, from a range: silent
    b.delete(8, packed, start(5), start(6)) // missing: NF
    b.delete(9, packed, start(2), start(3), true) // loud: HD
    assert.equal(b.count, 10)
    const seen: string[] = []
    await b.send(conn, (r: MetaReply) => {
      let s = `${r.opaque}:${String.fromCharCode(r.status >> 8, r.status & 0xff)}`
      if (r.status === VA) s += `:${r.value!.toString()}:${itemFlags(r)}:${itemTtl(r) > 50 ? 'ttl' : itemTtl(r)}:${itemCas(r) === undefined ? 'no cas' : 'cas'}`
      if (r.status === HD && r.opaque === 3) s += itemCas(r) === undefined ? ':no cas' : ':cas'
      seen.push(s)
    })
    assert.deepEqual(seen, ['0:VA:zero:3:ttl:cas', '1:HD', '3:HD:cas', '4:NS', '5:EX', '6:NF', '8:NF', '9:HD'])
    assert.equal(b.count, 0)
    const [k1, k2, k3, k4] = await node.readForMove([k[1]!, k[2]!, k[3]!, k[4]!])
    assert.equal(k1, undefined, 'deleted at its CAS')
    assert.equal(k2, undefined, 'deleted')
    assert.equal(k3?.value.toString(), 'new')
    assert.equal(k3?.flags, 9)
    assert.equal(k4, undefined)
    // The batch's values stay readable until the next batch is built.
    assert.ok(b.sent!.includes(Buffer.from('__new__')))
  })

  it('NodeBatch.sendDetached: several batches from one builder in flight at once', async () => {
    const b = new NodeBatch(64)
    const keys = Array.from({ length: 300 }, (_, i) => key(`detached${i}`))
    const sends: Promise<void>[] = []
    for (let i = 0; i < keys.length; i++) {
      const v = Buffer.from(`value ${i}`)
      b.store(storeMode('set'), i, keys[i]!, 0, keys[i]!.length, v, 0, v.length, i, -1, 0)
      if (b.count === 50) sends.push(b.sendDetached(conn, () => assert.fail('a quiet set answered')))
    }
    await Promise.all(sends)
    const items = await node.readForMove(keys)
    assert.deepEqual(
      items.map((it) => it?.value.toString()),
      keys.map((_, i) => `value ${i}`),
    )
    assert.deepEqual(
      items.map((it) => it?.flags),
      keys.map((_, i) => i),
    )
  })

  it('dump: the hash walk and the LRU walk each list every key once with its metadata (expiry, CAS, size, fetched); a node without a connection of its own opens one', async () => {
    // A server of its own: the dump must list exactly the keys written here.
    const other = await startMemcached()
    const own = new MemcachedNode(other.address) // no connection given: opens (and closes) its own
    try {
      const keys = Array.from({ length: 300 }, (_, i) => (i === 0 ? Buffer.from([0x00, 0x20, 0x0a, 0xff, 0x41]) : Buffer.from(`dump:${i}`)))
      const written = await own.set(keys.map((k, i) => ({ key: k, item: item(`v${i}`.repeat(1 + (i % 7)), i % 2 === 0 ? 600 : -1, i) })))
      const cas = written.map((r) => (r.stored ? r.cas : assert.fail('not stored')))
      // Two keys fetched (an ordinary read sets fetch=yes; a read for a move does not count).
      const read = new NodeBatch()
      read.read(0, keys[1]!, 0, keys[1]!.length).read(1, keys[2]!, 0, keys[2]!.length)
      await read.send(await own.connection(), () => undefined)
      await own.readForMove([keys[3]!])
      const now = Number((await own.stats()).get('time'))
      const index = new Map(keys.map((k, i) => [k.toString('hex'), i]))
      for (const mode of ['hash', 'all'] as const) {
        const seen = new Map<number, { exp: number; cas: string; fetched: boolean; size: number; flags: number }>()
        const walks: string[] = []
        const r = await own.dump({ mode, onWalk: (m) => walks.push(m), onEntry: (e) => {
          const i = index.get(e.key.toString('hex'))
          assert.ok(i !== undefined, `unexpected key ${e.key.toString('hex')}`)
          assert.ok(!seen.has(i), `key ${i} listed twice`)
          seen.set(i, { exp: e.exp, cas: e.cas, fetched: e.fetched, size: e.size, flags: e.flags })
        } })
        assert.deepEqual(walks, [mode])
        assert.equal(r.mode, mode)
        assert.equal(r.entries, keys.length)
        assert.equal(seen.size, keys.length)
        assert.equal(r.distinctKeys, mode === 'hash')
        for (const [i, e] of seen) {
          if (i % 2 === 0) assert.ok(Math.abs(e.exp - (now + 600)) <= 2, `key ${i}: exp ${e.exp}, now ${now}`)
          else assert.equal(e.exp, -1, `key ${i}`)
          assert.equal(e.cas, cas[i], `key ${i}`)
          assert.equal(e.fetched, i === 1 || i === 2, `key ${i}`)
          // size is the whole item in memory: more than key and value.
          assert.ok(e.size > keys[i]!.length + `v${i}`.length * (1 + (i % 7)), `key ${i}: size ${e.size}`)
          assert.ok(e.flags === -1 || e.flags === i, `key ${i}: flags ${e.flags}`) // 1.6.18 prints none
        }
      }
    } finally {
      await own.close()
      await other.stop()
    }
  })

  it('flush: empties this node', async () => {
    const k = key('flush')
    await node.set([{ key: k, item: item('x') }])
    await node.flush()
    assert.equal((await node.readForMove([k]))[0], undefined)
  })
})
