import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, type Socket } from 'node:net'
import { once } from 'node:events'
import { spawnSync } from 'node:child_process'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  EN,
  ERR,
  EX,
  HD,
  MetaConnection,
  MetaPayload,
  MN,
  NF,
  NS,
  parseAddress,
  formatAddress,
  statusName,
  VA,
  type MetaReply,
} from '../../src/core/protocol/index.js'
import { MemdrainError } from '../../src/core/errors.js'
import { rejectsWithCode } from '../helpers/assert.js'
import { fakeServer, freePort, pidAlive, rawCommand, startMemcached, type MemcachedServer } from '../helpers/memcached.js'

/** What a test keeps from a reply (the MetaReply itself is reused). */
interface Seen {
  status: string
  opaque: number
  value?: string
  f: number
  t: number
  cas: string | undefined
  line: string
}

function seen(r: MetaReply): Seen {
  const s: Seen = { status: statusName(r.status), opaque: r.opaque, f: r.flagInt('f'), t: r.flagInt('t'), cas: r.flagToken('c'), line: r.line() }
  if (r.value !== undefined) s.value = r.value.toString('latin1')
  return s
}


describe('parseAddress', () => {
  it('parses host:port, [v6]:port, host, bare v6', () => {
    assert.deepEqual(parseAddress('10.0.0.5:11212'), { host: '10.0.0.5', port: 11212 })
    assert.deepEqual(parseAddress('cache-1'), { host: 'cache-1', port: 11211 })
    assert.deepEqual(parseAddress('[::1]:22122'), { host: '::1', port: 22122 })
    assert.deepEqual(parseAddress('[fe80::1]'), { host: 'fe80::1', port: 11211 })
    assert.deepEqual(parseAddress('2001:db8::1'), { host: '2001:db8::1', port: 11211 })
    assert.equal(formatAddress({ host: '::1', port: 5 }), '[::1]:5')
    assert.equal(formatAddress(parseAddress('a:1')), 'a:1')
  })
  it('rejects bad ports and shapes with a usage error', () => {
    for (const bad of ['h:0', 'h:65536', 'h:abc', 'h:', ':11211', '[::1', '[nope]:1', 'a:b:c', 'h:1.5', '']) {
      assert.throws(() => parseAddress(bad), (err: unknown) => err instanceof MemdrainError && err.code === 'BAD_ADDRESS' && err.exitCode === 2, bad)
    }
  })
})

describe('harness', () => {
  it('starts, restarts empty on the same port, and leaves no process behind', async () => {
    const s = await startMemcached()
    assert.match(s.address, /^127\.0\.0\.1:\d+$/)
    assert.ok(pidAlive(s.pid))
    assert.match(await rawCommand(s.address, 'set k 0 0 1\r\nx\r\n'), /^STORED\r\n$/)
    const firstPid = s.pid
    await s.restart()
    assert.notEqual(s.pid, firstPid)
    assert.ok(!pidAlive(firstPid))
    assert.equal(await rawCommand(s.address, 'get k\r\n'), 'END\r\n')
    await s.stop()
    assert.ok(!pidAlive(s.pid))
    assert.equal(s.running, false)
    await s.stop() // idempotent
  })

  it('stops a paused server', async () => {
    const s = await startMemcached()
    s.pause()
    await s.stop()
    assert.ok(!pidAlive(s.pid))
  })

  it('says how to install memcached when it is missing', () => {
    const script = "import('./test/helpers/memcached.ts').then((m) => m.startMemcached()).catch((e) => { console.error(e.message); process.exit(7) })"
    const r = spawnSync(process.execPath, ['--import', 'tsx', '-e', script], { cwd: process.cwd(), env: { ...process.env, PATH: '/nonexistent' }, encoding: 'utf8' })
    assert.equal(r.status, 7, r.stderr)
    assert.match(r.stderr, /apt-get install memcached/)
  })

  it('freePort gives a bindable port', async () => {
    const port = await freePort()
    const srv = createServer().listen(port, '127.0.0.1')
    await once(srv, 'listening')
    srv.close()
  })
})

describe('MetaConnection against memcached', () => {
  let s: MemcachedServer
  let c: MetaConnection
  before(async () => {
    s = await startMemcached({ itemSizeMax: '2m', memoryMb: 128 })
    c = await MetaConnection.connect(s)
  })
  after(async () => {
    await c?.close()
    await s?.stop()
  })

  it('version and checkVersion', async () => {
    assert.match(await c.version(), /^1\.6\.\d+/)
    assert.equal(await c.checkVersion(), await c.version())
    await rejectsWithCode(c.checkVersion('99.0.0'), 'VERSION_TOO_OLD', 3)
  })

  it('stats: general, settings, slabs', async () => {
    const general = await c.stats()
    assert.equal(general.get('pid'), String(s.pid))
    assert.ok(Number(general.get('time')) > 1_600_000_000)
    const settings = await c.stats('settings')
    assert.equal(settings.get('item_size_max'), String(2 * 1024 * 1024))
    assert.equal(settings.get('dump_enabled'), 'yes')
    await rawCommand(s.address, 'set slabby 0 0 3\r\nabc\r\n')
    const slabs = await c.stats('slabs')
    assert.ok(Number(slabs.get('active_slabs')) >= 1)
    assert.ok([...slabs.keys()].some((k) => /^\d+:chunk_size$/.test(k)))
  })

  it('simple one-line commands', async () => {
    assert.equal(await c.simple('mn'), 'MN')
    assert.equal(await c.simple('flush_all'), 'OK')
    assert.equal(await c.simple('bogus_command'), 'ERROR')
    assert.equal(await c.simple('mn'), 'MN') // still in step
  })

  it('a batch of ms/mg/md with q and O replies in order; errors do not break the stream', async () => {
    await c.simple('flush_all')
    const p = new MetaPayload()
    const k = (s: string): Buffer => Buffer.from(s)
    p.command('ms', k('a')).size(3).flag('F', 42).flag('T', 0).flags('q').flag('O', 1).end(k('one'))
    p.command('ms', k('b')).size(3).flag('T', 1000).flag('O', 2).end(k('two'))
    p.command('mg', k('a')).flags('k v f t c u q').flag('O', 3).end()
    p.command('mg', k('missing')).flags('v q').flag('O', 4).end() // EN suppressed by q
    p.command('mg', k('missing')).flags('v').flag('O', 5).end()
    p.command('ms', k('a')).size(1).flags('ME q').flag('O', 6).end(k('x')) // add on existing: NS
    p.raw('bogus line\r\n')
    p.command('md', k('b')).flagToken('C', '18446744073709551000').flags('q').flag('O', 7).end() // EX
    p.command('md', k('nothere')).flags('q').flag('O', 8).end() // NF is not suppressed by q
    p.command('mg', k('b')).flags('v t c').flag('O', 9).end()
    p.noop()
    const replies: Seen[] = []
    await c.batch(p.take(), (r) => replies.push(seen(r)))
    assert.deepEqual(
      replies.map((r) => [r.status, r.opaque]),
      [
        ['HD', 2],
        ['VA', 3],
        ['EN', 5],
        ['NS', 6],
        ['ERR', -1],
        ['EX', 7],
        ['NF', 8],
        ['VA', 9],
      ],
    )
    const [, a, , , err, , , b] = replies
    assert.equal(a!.value, 'one')
    assert.equal(a!.f, 42)
    assert.equal(a!.t, -1) // no expiry
    assert.match(a!.cas!, /^\d+$/)
    assert.equal(err!.line, 'ERROR')
    assert.equal(b!.value, 'two')
    assert.ok(b!.t > 990 && b!.t <= 1000)

    // Delete with the right CAS (quiet: no reply), then the key is gone.
    const p2 = new MetaPayload()
    p2.command('md', k('b')).flagToken('C', b!.cas!).flags('q').flag('O', 10).end()
    p2.command('mg', k('b')).flags('v').flag('O', 11).end()
    p2.noop()
    const after: Seen[] = []
    await c.batch(p2.take(), (r) => after.push(seen(r)))
    assert.deepEqual(
      after.map((r) => [r.status, r.opaque]),
      [['EN', 11]],
    )
  })

  it('exports two-letter status codes', () => {
    assert.equal(VA, (0x56 << 8) | 0x41)
    assert.deepEqual([HD, EN, NS, EX, NF, MN].map(statusName), ['HD', 'EN', 'NS', 'EX', 'NF', 'MN'])
    assert.equal(statusName(ERR), 'ERR')
  })

  it('1 MB values split across many TCP chunks', async () => {
    const values = [0x41, 0x0d, 0x0a].map((fill, i) => {
      const v = Buffer.alloc(1024 * 1024 + i * 7, fill)
      v.write('\r\nMN\r\n', 1000) // framing is by length, not by scanning
      return v
    })
    const p = new MetaPayload()
    values.forEach((v, i) => p.command('ms', Buffer.from(`big${i}`)).size(v.length).flag('T', 0).flags('q').flag('O', i).end(v))
    values.forEach((_, i) => p.command('mg', Buffer.from(`big${i}`)).flags('v s').flag('O', 100 + i).end())
    p.noop()
    const got: { opaque: number; size: number; equal: boolean }[] = []
    await c.batch(p.take(), (r) => {
      assert.equal(r.status, VA, r.line())
      const i = r.opaque - 100
      got.push({ opaque: r.opaque, size: r.flagInt('s'), equal: r.value!.equals(values[i]!) })
    })
    assert.deepEqual(
      got,
      values.map((v, i) => ({ opaque: 100 + i, size: v.length, equal: true })),
    )
  })

  it('10k keys in pipelined batches, several in flight', async () => {
    const total = 10_000
    const perBatch = 1000
    const writes: Promise<void>[] = []
    let stored = 0
    for (let b = 0; b < total / perBatch; b++) {
      const p = new MetaPayload()
      for (let i = b * perBatch; i < (b + 1) * perBatch; i++) {
        const v = Buffer.from(`value-${i}`)
        p.command('ms', Buffer.from(`pipe:${i}`)).size(v.length).flag('F', i).flag('T', 0).flag('O', i).end(v)
      }
      p.noop()
      writes.push(
        c.batch(p.take(), (r) => {
          assert.equal(r.status, HD, r.line())
          assert.equal(r.opaque, stored) // in order across batches
          stored++
        }),
      )
    }
    assert.ok(c.pending >= 2, `pending ${c.pending}`)
    await Promise.all(writes)
    assert.equal(stored, total)

    let next = 0
    const reads: Promise<void>[] = []
    for (let b = 0; b < total / perBatch; b++) {
      const p = new MetaPayload()
      for (let i = b * perBatch; i < (b + 1) * perBatch; i++) p.command('mg', Buffer.from(`pipe:${i}`)).flags('v f q').flag('O', i).end()
      p.noop()
      reads.push(
        c.batch(p.take(), (r) => {
          assert.equal(r.opaque, next)
          assert.equal(r.flagInt('f'), next)
          assert.equal(r.value!.toString(), `value-${next}`)
          next++
        }),
      )
    }
    await Promise.all(reads)
    assert.equal(next, total)
  })

  it('a throwing onReply rejects its batch after reading to MN; the connection stays usable', async () => {
    const p = new MetaPayload()
    for (let i = 0; i < 5; i++) p.command('mg', Buffer.from('pipe:1')).flags('v').flag('O', i).end()
    p.noop()
    let calls = 0
    await assert.rejects(
      c.batch(p.take(), () => {
        calls++
        throw new Error('boom')
      }),
      /boom/,
    )
    assert.equal(calls, 1)
    assert.equal(await c.simple('mn'), 'MN')
  })
})

describe('connection failures', () => {
  it('closed port → SERVER_UNREACHABLE (exit 3) naming the server', async () => {
    const port = await freePort()
    const err = await rejectsWithCode(MetaConnection.connect({ host: '127.0.0.1', port }), 'SERVER_UNREACHABLE', 3)
    assert.match(err.message, new RegExp(`127\\.0\\.0\\.1:${port}.*refused`))
    assert.ok(err.suggestions.some((s) => s.includes(`127.0.0.1:${port}`)))
  })

  it('old memcached → VERSION_TOO_OLD naming server and version', async () => {
    const fake = await fakeServer((line) => (line === 'version' ? 'VERSION 1.4.5' : 'ERROR'))
    try {
      const c = await MetaConnection.connect(fake)
      const err = await rejectsWithCode(c.checkVersion(), 'VERSION_TOO_OLD', 3)
      assert.match(err.message, /1\.4\.5/)
      assert.match(err.message, new RegExp(fake.address))
      assert.match(err.message, /1\.6\.10/)
      await c.close()
    } finally {
      await fake.close()
    }
  })

  it('an HTTP server → NOT_MEMCACHED', async () => {
    const fake = await fakeServer(() => 'HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n', { closeAfterReply: true })
    try {
      const c = await MetaConnection.connect(fake)
      const err = await rejectsWithCode(c.checkVersion(), 'NOT_MEMCACHED', 3)
      assert.match(err.message, /HTTP\/1\.1 400/)
    } finally {
      await fake.close()
    }
  })

  it('a silent listener or one that hangs up → NOT_MEMCACHED', async () => {
    const silent = await fakeServer(() => null)
    const hangup = await fakeServer(() => '', { closeAfterReply: true })
    try {
      const c1 = await MetaConnection.connect(silent, { requestTimeoutMs: 200 })
      await rejectsWithCode(c1.checkVersion(), 'NOT_MEMCACHED', 3)
      const c2 = await MetaConnection.connect(hangup)
      await rejectsWithCode(c2.checkVersion(), 'NOT_MEMCACHED', 3)
    } finally {
      await silent.close()
      await hangup.close()
    }
  })

  it('a paused (SIGSTOP) server → SERVER_TIMEOUT for every pending request, within the timeout', async () => {
    const s = await startMemcached()
    try {
      const c = await MetaConnection.connect(s, { requestTimeoutMs: 300 })
      await c.checkVersion()
      const closedWith = new Promise((resolve) => c.onClose(resolve))
      s.pause()
      const started = Date.now()
      const p = new MetaPayload().command('mg', Buffer.from('x')).flags('v').end().noop().take()
      const results = await Promise.allSettled([c.batch(p, () => {}), c.stats(), c.simple('mn')])
      const elapsed = Date.now() - started
      for (const r of results) {
        assert.equal(r.status, 'rejected')
        assert.equal((r as PromiseRejectedResult).reason.code, 'SERVER_TIMEOUT')
        assert.equal((r as PromiseRejectedResult).reason.exitCode, 3)
      }
      assert.ok(elapsed >= 250 && elapsed < 1500, `elapsed ${elapsed} ms`)
      assert.equal(((await closedWith) as MemdrainError).code, 'SERVER_TIMEOUT')
      assert.equal(c.closed, true)
      await rejectsWithCode(c.simple('mn'), 'SERVER_TIMEOUT')

      // A new connection to the paused server connects (kernel backlog) but gets no answer.
      const c2 = await MetaConnection.connect(s, { requestTimeoutMs: 200 })
      await rejectsWithCode(c2.version(), 'SERVER_TIMEOUT')
    } finally {
      s.resume()
      await s.stop()
    }
  })

  it('a connection closed by the server rejects every pending request with CONNECTION_CLOSED', async () => {
    const fake = await fakeServer((line) => (line === 'mn' ? 'CLIENT_ERROR bad data chunk' : null), { closeAfterReply: true })
    try {
      const c = await MetaConnection.connect(fake)
      const payload = Buffer.from('mg a v\r\nmn\r\n')
      const errs: string[] = []
      const results = await Promise.allSettled([c.batch(payload, (r) => errs.push(r.line())), c.batch(payload, () => {})])
      assert.deepEqual(errs, ['CLIENT_ERROR bad data chunk'])
      for (const r of results) assert.equal((r as PromiseRejectedResult).reason.code, 'CONNECTION_CLOSED')
      assert.match((results[0] as PromiseRejectedResult).reason.message, /CLIENT_ERROR bad data chunk/)
      assert.equal(c.closed, true)
    } finally {
      await fake.close()
    }
  })

  it('close() with requests pending rejects them; a server hang-up is reported to onClose', async () => {
    const silent = await fakeServer(() => null)
    try {
      const c = await MetaConnection.connect(silent)
      const pending = c.batch(Buffer.from('mn\r\n'), () => {})
      await c.close()
      const err = await rejectsWithCode(pending, 'CONNECTION_CLOSED')
      assert.match(err.message, /closed by memdrain/)
    } finally {
      await silent.close()
    }
    const s = await startMemcached()
    try {
      const c = await MetaConnection.connect(s)
      const closed = new Promise<unknown>((resolve) => c.onClose(resolve))
      await s.kill()
      assert.equal(((await closed) as MemdrainError).code, 'CONNECTION_CLOSED')
      await rejectsWithCode(c.simple('mn'), 'CONNECTION_CLOSED')
    } finally {
      await s.kill()
    }
  })

  it('the request timeout counts from the last bytes received (a slow reply is not a dead server)', async () => {
    const reply = Buffer.from(`VA 20 O1\r\n${'x'.repeat(20)}\r\nMN\r\n`)
    const server = createServer((socket) => {
      socket.once('data', async () => {
        for (let i = 0; i < reply.length; i += 4) {
          if (socket.destroyed) return
          socket.write(reply.subarray(i, i + 4))
          await sleep(40) // ~400 ms in all, longer than the 150 ms timeout
        }
      })
    }).listen(0, '127.0.0.1')
    await once(server, 'listening')
    try {
      const c = await MetaConnection.connect({ host: '127.0.0.1', port: (server.address() as { port: number }).port }, { requestTimeoutMs: 150 })
      const started = Date.now()
      let value = ''
      await c.batch(Buffer.from('mg a v O1\r\nmn\r\n'), (r) => (value = r.value!.toString()))
      assert.equal(value, 'x'.repeat(20))
      assert.ok(Date.now() - started > 300)
      await c.close()
    } finally {
      server.close()
    }
  })

  it('parses replies dribbled one byte per TCP chunk', async () => {
    const canned = Buffer.from(
      'HD O1\r\nVA 6 f3 t-1 c18446744073709551615 O2\r\n\r\nMN\r\n\r\nEN O3\r\nSERVER_ERROR out of memory storing object\r\nVA 0 O4\r\n\r\nMN\r\nVA 2 O5\r\nok\r\nMN\r\n',
      'latin1',
    )
    const sockets: Socket[] = []
    const server = createServer((socket) => {
      sockets.push(socket)
      socket.setNoDelay(true)
      socket.once('data', async () => {
        for (let i = 0; i < canned.length; i++) {
          socket.write(canned.subarray(i, i + 1))
          await sleep(0)
        }
      })
    }).listen(0, '127.0.0.1')
    await once(server, 'listening')
    const port = (server.address() as { port: number }).port
    try {
      const c = await MetaConnection.connect({ host: '127.0.0.1', port })
      const first: Seen[] = []
      const second: Seen[] = []
      await Promise.all([c.batch(Buffer.from('x\r\n'), (r) => first.push(seen(r))), c.batch(Buffer.alloc(0), (r) => second.push(seen(r)))])
      assert.deepEqual(
        first.map((r) => [r.status, r.opaque, r.value]),
        [
          ['HD', 1, undefined],
          ['VA', 2, '\r\nMN\r\n'],
          ['EN', 3, undefined],
          ['ERR', -1, undefined],
          ['VA', 4, ''],
        ],
      )
      assert.equal(first[1]!.cas, '18446744073709551615')
      assert.equal(first[1]!.t, -1)
      assert.equal(first[3]!.line, 'SERVER_ERROR out of memory storing object')
      assert.deepEqual(
        second.map((r) => [r.status, r.opaque, r.value]),
        [['VA', 5, 'ok']],
      )
      await c.close()
    } finally {
      for (const s of sockets) s.destroy()
      server.close()
    }
  })
})
