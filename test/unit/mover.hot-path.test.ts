import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { FingerprintSet } from '../../src/core/engine/fingerprint-set.js'
import { KeyBatch } from '../../src/core/engine/key-batch.js'
import { KeySpool } from '../../src/core/engine/spool.js'
import { MetaPayload } from '../../src/core/protocol/index.js'

const root = mkdtempSync(path.join(tmpdir(), 'memdrain-hot-path-test-'))
after(() => rmSync(root, { recursive: true, force: true }))

/** Reads the spool as a mover does, batches of `capacity`, pushing each key to `got` as it is read; resolves at the spool's end. */
async function readInto(spool: KeySpool, capacity: number, got: string[]): Promise<void> {
  const reader = spool.reader()
  const batch = new KeyBatch(capacity, 1)
  for (;;) {
    const n = await reader.nextBatch(batch)
    if (n === 0) return
    for (let i = 0; i < n; i++) got.push(batch.key(i).toString('latin1'))
  }
}

describe('FingerprintSet', () => {
  for (const expected of [0, 1000, 50_000]) {
    it(`presized for ${expected}: every key once, no false "seen" over growth`, () => {
      const set = new FingerprintSet(expected)
      const n = 50_000
      for (let i = 0; i < n; i++) assert.equal(set.add(Buffer.from(`key:${i}`)), true, `first add of key:${i}`)
      assert.equal(set.size, n)
      for (let i = 0; i < n; i++) assert.equal(set.add(Buffer.from(`key:${i}`)), false, `second add of key:${i}`)
      for (let i = 0; i < n; i++) assert.equal(set.has(Buffer.from(`key:${i}`)), true)
      let strangers = 0
      for (let i = 0; i < n; i++) if (set.has(Buffer.from(`other:${i}`))) strangers++
      assert.equal(strangers, 0)
      assert.equal(set.size, n)
    })
  }

  it('hashes the given range only', () => {
    const set = new FingerprintSet()
    const buf = Buffer.from('xxabcyy')
    assert.equal(set.add(buf, 2, 5), true)
    assert.equal(set.has(Buffer.from('abc')), true)
    assert.equal(set.has(buf), false)
  })
})

describe('KeySpool records with destinations', () => {
  it('gives back keys, sizes, expiry and the destinations they were routed to, hottest first', () => {
    const now = 1_700_000_000
    const spool = KeySpool.create({ root, order: 'hot-first', serverNow: now, label: 'unit' })
    try {
      const dests = new Int32Array([0, 0, 0])
      const long = Buffer.alloc(250, 0x6b) // longer than the byte-loop threshold
      const written: { key: Buffer; size: number; exp: number; dests: number[] }[] = []
      for (let i = 0; i < 3000; i++) {
        const key = i % 500 === 7 ? Buffer.concat([long.subarray(0, 240), Buffer.from(String(i).padStart(10, '0'))]) : Buffer.from(`k${i}`)
        const n = 1 + (i % 3)
        for (let j = 0; j < n; j++) dests[j] = (i * 7 + j * 300) % 700 // ids above 255 need both bytes
        const la = i % 2 === 0 ? now - 1 : now - 100_000 // two recency buckets
        spool.add(key, 100 + i, i % 5 === 0 ? -1 : now + i, la, dests, n, 0)
        written.push({ key, size: 100 + i, exp: i % 5 === 0 ? -1 : now + i, dests: Array.from(dests.subarray(0, n)) })
      }
      // A record without destinations (an older caller): read back as not routed.
      spool.add(Buffer.from('plain'), 1, -1, now)
      spool.finish()
      const reader = spool.reader()
      const batch = new KeyBatch(64, 3)
      const got: { key: string; size: number; exp: number; dests: number[] }[] = []
      while (reader.next(batch) > 0) {
        for (let i = 0; i < batch.count; i++) {
          const n = batch.destCount[i]!
          got.push({ key: batch.key(i).toString('latin1'), size: batch.size[i]!, exp: batch.exp[i]!, dests: Array.from(batch.dests.subarray(i * 3, i * 3 + n)) })
        }
      }
      const hot = written.filter((_, i) => i % 2 === 0)
      const cold = written.filter((_, i) => i % 2 === 1)
      const want = [...hot, { key: Buffer.from('plain'), size: 1, exp: -1, dests: [] }, ...cold]
      // 'plain' went into the hottest bucket after the other hot keys.
      assert.deepEqual(
        got,
        want.map((w) => ({ key: w.key.toString('latin1'), size: w.size, exp: w.exp, dests: w.dests })),
      )
    } finally {
      spool.remove()
    }
  })
})

describe('KeySpool with dedupe', () => {
  it('drops every repeat of a key (in any bucket, checked in batches): the first sight is kept, with its recency; each drop is reported', () => {
    const now = 1_700_000_000
    const dropped: { size: number; dests: readonly number[] }[] = []
    const spool = KeySpool.create({
      root,
      order: 'hot-first',
      serverNow: now,
      label: 'dedupe',
      dedupe: new FingerprintSet(0),
      onDropped: (size, d) => dropped.push({ size, dests: [...d] }),
    })
    try {
      const dests = new Int32Array([0, 0])
      // What the reader should give: hot records then cold ones, each key where it was first spooled.
      const hot: number[] = []
      const cold: number[] = []
      const repeats: { size: number; dests: number[] }[] = []
      for (let i = 0; i < 5000; i++) {
        const repeat = i % 4 === 3
        const k = repeat ? i - 2 : i // every 4th record repeats the key two before it...
        const isHot = (k % 3 === 0) !== repeat // ...in the other recency bucket (its last access changed)
        dests[0] = k % 600
        dests[1] = 599 - (k % 600)
        // A repeat listed with another size: the one dropped is the later one.
        const size = repeat ? 7 + k : 10 + k
        spool.add(Buffer.from(`key-${k}`), size, -1, isHot ? now - 5 : now - 50_000, dests, 2, 0)
        if (repeat) repeats.push({ size, dests: [k % 600, 599 - (k % 600)] })
        else (isHot ? hot : cold).push(k)
      }
      spool.finish()
      assert.equal(dropped.length, 1250)
      const bySize = (a: { size: number }, b: { size: number }): number => a.size - b.size
      assert.deepEqual([...dropped].sort(bySize), repeats.sort(bySize))
      const want = [...hot, ...cold]
      assert.equal(spool.count, want.length)
      assert.equal(spool.bytes, want.reduce((a, k) => a + 10 + k, 0))
      const reader = spool.reader()
      const batch = new KeyBatch(100, 2)
      const got: number[] = []
      while (reader.next(batch) > 0) {
        for (let i = 0; i < batch.count; i++) {
          const k = Number(batch.key(i).toString('latin1').slice(4))
          assert.equal(batch.destCount[i], 2)
          assert.deepEqual(Array.from(batch.dests.subarray(i * 2, i * 2 + 2)), [k % 600, 599 - (k % 600)])
          got.push(k)
        }
      }
      assert.deepEqual(got, want)
    } finally {
      spool.remove()
    }
  })
})

describe('KeySpool with dedupe, one bucket', () => {
  it('withdraws repeats from the middle of the write buffer and keeps the order of first sights, across flushes', async () => {
    const dropped: number[] = []
    const spool = KeySpool.create({ root, order: 'dump', serverNow: 0, label: 'dedupe-one', dedupe: new FingerprintSet(0), onDropped: (size) => dropped.push(size) })
    try {
      const got: string[] = []
      // A reader waiting for records makes the spool flush early: a flush must never carry an unchecked repeat.
      const reading = readInto(spool, 50, got)
      const want: string[] = []
      for (let i = 0; i < 3000; i++) {
        // Keys 0..999 listed once, each key k = 1000.. a repeat of k - 1000 (the 2nd and 3rd thousand: 2 repeats each).
        const k = i % 1000
        spool.add(Buffer.from(`k${k}-${'x'.repeat(k % 40)}`), i, -1, 0)
        if (i < 1000) want.push(`k${k}-${'x'.repeat(k % 40)}`)
        if (i % 700 === 0) await new Promise((resolve) => setImmediate(resolve))
      }
      spool.finish()
      await reading
      assert.deepEqual(got, want)
      assert.equal(spool.count, 1000)
      assert.deepEqual(dropped.sort((a, b) => a - b), Array.from({ length: 2000 }, (_, i) => 1000 + i))
    } finally {
      spool.remove()
    }
  })
})

describe('KeySpool as a buffer', () => {
  it('gives records to a reader while they are still being added, hottest bucket first, and ends when finished', async () => {
    const now = 1_700_000_000
    const spool = KeySpool.create({ root, order: 'hot-first', serverNow: now, label: 'stream' })
    try {
      const got: string[] = []
      const consumer = readInto(spool, 500, got)
      // Nothing readable yet: the reader waits (and asks the spool to flush early from now on).
      await new Promise((r) => setImmediate(r))
      assert.equal(got.length, 0)
      for (let i = 0; i < 2000; i++) spool.add(Buffer.from(`cold-${i}`), 50, -1, now - 100_000)
      // ~16 KB a flush while a reader waits: most of the keys are readable before the dump ends.
      await new Promise((r) => setImmediate(r))
      assert.ok(got.length >= 500, `read ${got.length} of 2000 while adding`)
      const readEarly = got.length
      for (let i = 0; i < 300; i++) spool.add(Buffer.from(`hot-${i}`), 50, -1, now - 1)
      for (let i = 2000; i < 2500; i++) spool.add(Buffer.from(`cold-${i}`), 50, -1, now - 100_000)
      spool.finish()
      await consumer
      assert.equal(got.length, 2800)
      assert.equal(new Set(got).size, 2800)
      // Among what was not read before the hot keys came, every hot key comes before the later cold ones.
      const rest = got.slice(readEarly)
      const lastHot = rest.findLastIndex((k) => k.startsWith('hot-'))
      const firstLateCold = rest.findIndex((k) => k.startsWith('cold-') && Number(k.slice(5)) >= 2000)
      assert.ok(lastHot < firstLateCold, `hot keys interleaved with later cold ones (${lastHot} ≥ ${firstLateCold})`)
    } finally {
      spool.remove()
    }
  })
})

describe('MetaPayload hot-path builders', () => {
  it('write the same bytes as the general builders (text and base64 keys)', () => {
    const keys = [Buffer.from('user:42'), Buffer.from('a key with spaces'), Buffer.alloc(40, 0x7a), Buffer.from('ключ', 'utf8')]
    const packed = Buffer.concat([Buffer.from('##'), ...keys.flatMap((k) => [k, Buffer.from('#')])])
    const value = Buffer.alloc(100, 0x2e)
    const valueBuf = Buffer.concat([Buffer.from('xx'), value, Buffer.from('yy')])
    const cas = Buffer.from('__18446744073709551615__')
    const fast = new MetaPayload(16)
    const slow = new MetaPayload(16)
    let at = 2
    for (const k of keys) {
      fast.commandAt('ms', packed, at, at + k.length).size(value.length).flag('T', 0).encodedFlags(Buffer.from(' ME q')).flag('O', 3).endWithValue(valueBuf, 2, 2 + value.length)
      slow.command('ms', k).size(value.length).flag('T', 0).flags('ME q').flag('O', 3).end(value)
      fast.commandAt('md', packed, at, at + k.length).flagBytesAt(0x43, cas, 2, cas.length - 2).encodedFlags(Buffer.from(' q')).end()
      slow.command('md', k).flagToken('C', '18446744073709551615').flags('q').end()
      at += k.length + 1
    }
    const a = Buffer.from(fast.noop().takeReusing())
    const b = slow.noop().take()
    assert.equal(a.toString('latin1'), b.toString('latin1'))
    assert.match(a.toString('latin1'), /^ms user:42 100 T0 ME q O3\r\n\.{100}\r\nmd user:42 C18446744073709551615 q\r\nms YSBrZXkgd2l0aCBzcGFjZXM= 100 b T0/)
    // takeReusing starts the next batch in the same buffer.
    fast.commandAt('mg', packed, 2, 2 + keys[0]!.length).end()
    assert.equal(fast.noop().takeReusing().toString('latin1'), 'mg user:42\r\nmn\r\n')
  })

  it('copies values of every length byte for byte, from any offset of any kind of source', () => {
    const bytes = Buffer.alloc(1000)
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 37 + 11) & 0xff
    // A Buffer of the shared pool (byteOffset ≠ 0), a fresh one, a plain Uint8Array over an offset.
    const pooled = Buffer.from(bytes.subarray(0, 400))
    const sources: Uint8Array[] = [pooled, Buffer.concat([bytes]), new Uint8Array(bytes.buffer, bytes.byteOffset + 3, 900)]
    const p = new MetaPayload(8) // grows (a new buffer, a new view) along the way
    const expected: Buffer[] = []
    for (const src of sources) {
      for (let len = 0; len <= 300 && len <= src.length - 7; len++) {
        const start = len % 7
        p.command('ms', Buffer.from(`k${len}`)).size(len).endWithValue(src, start, start + len)
        expected.push(Buffer.from(`ms k${len} ${len}\r\n`), Buffer.from(src.subarray(start, start + len)), Buffer.from('\r\n'))
      }
      // takeReusing keeps the buffer (and its view); take() starts a new one.
      assert.deepEqual(src === pooled ? p.takeReusing() : p.take(), Buffer.concat(expected.splice(0)))
    }
  })
})
