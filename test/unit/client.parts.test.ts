/**
 * The parts of the application library that need no server: migration reports and their sum,
 * the replicated-write fan-out, down/up tracking, options, the TTL rule of moves.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir, hostname } from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { clientReportDir, isPoolClientError, PoolClient, POOL_CLIENT_DEFAULTS, sumClientMigrations } from '../../src/core/client/index.js'
import { fanOut, PerKeyOnce } from '../../src/core/client/chain-ops.js'
import { HealthTracker } from '../../src/core/client/health.js'
import { MigrationLedger } from '../../src/core/client/migration.js'
import { expiryToken } from '../../src/core/protocol/ttl.js'
import { resolveOptions } from '../../src/core/client/options.js'
import { validatePool } from '../../src/core/pool/validate.js'

async function withDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(path.join(tmpdir(), 'memdrain-client-unit-'))
  try {
    return await fn(dir)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

function poolDoc(startedAt?: string): string {
  return JSON.stringify({
    hash: 'memjs',
    servers: [
      { address: '10.0.0.1:11211' },
      { address: '10.0.0.2:11211', state: 'deactivating', ...(startedAt === undefined ? {} : { transition: { startedAt } }) },
    ],
  })
}

describe('migration reports', () => {
  it('the ledger writes <pool>.clients/<host>-<pid>.json atomically, only when counts changed', async () => {
    await withDir(async (dir) => {
      const poolFile = path.join(dir, 'memdrain.json')
      const errors: Error[] = []
      const ledger = new MigrationLedger(poolFile, 60_000, (e) => errors.push(e))
      assert.equal(ledger.file, path.join(clientReportDir(poolFile), `${hostname()}-${process.pid}.json`))
      await ledger.flush()
      await assert.rejects(readdir(clientReportDir(poolFile)), 'nothing written before the first move')
      ledger.record('10.0.0.2:11211', 'T1')
      ledger.record('10.0.0.2:11211', 'T1')
      ledger.record('10.0.0.1:11211', undefined)
      await ledger.close()
      const files = await readdir(clientReportDir(poolFile))
      assert.deepEqual(files, [path.basename(ledger.file!)], 'no temporary file left')
      await writeFile(poolFile, poolDoc('T1'))
      assert.deepEqual(await sumClientMigrations(poolFile), new Map([['10.0.0.2:11211', 2], ['10.0.0.1:11211', 1]]))
      assert.deepEqual(errors, [])
    })
  })

  it('a second client of the same pool file in one process gets its own report', async () => {
    await withDir(async (dir) => {
      const poolFile = path.join(dir, 'memdrain.json')
      const a = new MigrationLedger(poolFile, 60_000, () => undefined)
      const b = new MigrationLedger(poolFile, 60_000, () => undefined)
      assert.notEqual(a.file, b.file)
      await Promise.all([a.close(), b.close()])
    })
  })

  it('sums every process, keeps only counts of the current transition, skips junk', async () => {
    await withDir(async (dir) => {
      const poolFile = path.join(dir, 'memdrain.json')
      await writeFile(poolFile, poolDoc('T2'))
      const reports = clientReportDir(poolFile)
      await mkdir(reports)
      const report = (moved: Record<string, number>, transitions: Record<string, string>): string =>
        JSON.stringify({ version: 1, host: 'h', pid: 1, updatedAt: 'x', moved, transitions })
      await writeFile(path.join(reports, 'app1-1.json'), report({ '10.0.0.2:11211': 10 }, { '10.0.0.2:11211': 'T2' }))
      await writeFile(path.join(reports, 'app2-2.json'), report({ '10.0.0.2:11211': 5, '10.0.0.1:11211': 7 }, {})) // before the record / no record
      await writeFile(path.join(reports, 'app3-3.json'), report({ '10.0.0.2:11211': 1000 }, { '10.0.0.2:11211': 'T1' })) // an earlier drain
      await writeFile(path.join(reports, 'broken.json'), '{"version": 1, "moved": ')
      await writeFile(path.join(reports, 'other.json'), JSON.stringify({ version: 9, moved: { '10.0.0.2:11211': 1 } }))
      await writeFile(path.join(reports, '.app1-1.json.123.tmp'), report({ '10.0.0.2:11211': 1 }, {}))
      // Untagged counts of a server that has a record now were made before its drain counted its keys.
      assert.deepEqual(await sumClientMigrations(poolFile), new Map([['10.0.0.2:11211', 10], ['10.0.0.1:11211', 7]]))
      // Without a readable pool file nothing can be matched to a transition: all are summed.
      await rm(poolFile)
      assert.deepEqual(await sumClientMigrations(poolFile), new Map([['10.0.0.2:11211', 1015], ['10.0.0.1:11211', 7]]))
    })
  })

  it('no report directory: an empty map', async () => {
    await withDir(async (dir) => {
      assert.deepEqual(await sumClientMigrations(path.join(dir, 'memdrain.json')), new Map())
    })
  })

  it('a new transition of a server starts its count again', async () => {
    const ledger = new MigrationLedger(undefined, 60_000, () => undefined)
    ledger.record('s', 'T1')
    ledger.record('s', 'T1')
    ledger.record('s', 'T2')
    assert.equal(ledger.counts().get('s'), 1)
    // Moves made while the client saw no record do not join the count of the record that follows.
    ledger.record('u', undefined)
    ledger.record('u', undefined)
    ledger.record('u', 'T3')
    assert.equal(ledger.counts().get('u'), 1)
    await ledger.close()
  })
})

describe('fanOut', () => {
  const answer = <T>(ms: number, value: T, fail = false): Promise<T> => sleep(ms).then(() => (fail ? Promise.reject(new Error('boom')) : value))

  it('without a quorum waits for every link and succeeds if one did', async () => {
    const f = fanOut(['a', 'b', 'c'], (s) => answer(s === 'c' ? 30 : 1, s, s === 'b'), undefined)
    const r = await f.decided
    assert.deepEqual(r.map((x) => [x.server, x.ok]), [['a', true], ['b', false], ['c', true]])
  })

  it('with a quorum resolves as soon as enough links succeeded', async () => {
    const started = Date.now()
    const f = fanOut(['a', 'b', 'c'], (s) => answer(s === 'c' ? 200 : 1, s), 2)
    const r = await f.decided
    assert.ok(Date.now() - started < 150)
    assert.deepEqual(r.map((x) => x.server), ['a', 'b'])
    assert.equal((await f.all).length, 3)
  })

  it('rejects with every reply when the quorum is not met, or no link succeeded', async () => {
    await assert.rejects(fanOut(['a', 'b'], (s) => answer(1, s, s === 'b'), 2).decided, (e: unknown) => {
      assert.deepEqual((e as { results: { ok: boolean }[] }).results.map((x) => x.ok), [true, false])
      return true
    })
    await assert.rejects(fanOut(['a'], (s) => answer(1, s, true), undefined).decided)
    await assert.rejects(fanOut([], (s) => answer(1, s), undefined).decided)
  })

  it('using only `all` leaves no unhandled rejection behind', async () => {
    let unhandled = 0
    const onUnhandled = (): void => {
      unhandled++
    }
    process.on('unhandledRejection', onUnhandled)
    try {
      const results = await fanOut(['a', 'b'], (s) => answer(1, s, true), undefined).all
      assert.deepEqual(results.map((r) => r.ok), [false, false])
      await sleep(10)
      assert.equal(unhandled, 0)
    } finally {
      process.removeListener('unhandledRejection', onUnhandled)
    }
  })

  it('PerKeyOnce shares a running task per key', async () => {
    const once = new PerKeyOnce<number>()
    let runs = 0
    const task = async (): Promise<number> => {
      runs++
      await sleep(5)
      return runs
    }
    const [x, y] = await Promise.all([once.run('k', task), once.run('k', task)])
    assert.equal(runs, 1)
    assert.equal(x, y)
    await once.run('k', task)
    assert.equal(runs, 2)
  })
})

describe('HealthTracker', () => {
  it('skips a failed server for retryAfter, then lets exactly one probe through', () => {
    let now = 1000
    const events: string[] = []
    const h = new HealthTracker(500, { down: (a) => events.push(`down ${a}`), up: (a, ms) => events.push(`up ${a} ${ms}`) }, () => now)
    assert.equal(h.acquire('s'), true)
    h.failure('s', new Error('refused'))
    h.failure('s', new Error('refused again')) // a request sent before it was marked down
    assert.deepEqual(events, ['down s'])
    assert.equal(h.acquire('s'), false)
    assert.equal(h.snapshot('s').state, 'down')
    now += 500
    assert.equal(h.acquire('s'), true, 'the probe')
    assert.equal(h.acquire('s'), false, 'only one probe at a time')
    h.failure('s', new Error('still down'))
    assert.equal(h.acquire('s'), false)
    now += 500
    assert.equal(h.acquire('s'), true)
    h.success('s')
    assert.deepEqual(events, ['down s', 'up s 1000'])
    assert.equal(h.acquire('s'), true)
    assert.equal(h.snapshot('s').state, 'up')
  })
})

describe('options and API edges', () => {
  it('validates options and names the one that is wrong', () => {
    assert.equal(resolveOptions({}).timeout, POOL_CLIENT_DEFAULTS.timeout)
    for (const bad of [{ timeout: 0 }, { retryAfter: -1 }, { failover: 'sideways' }, { writeQuorum: 0 }, { defaultExpires: 1.5 }] as const) {
      assert.throws(
        () => resolveOptions(bad as never),
        (e: unknown) => isPoolClientError(e, 'OPTION_INVALID') && e.message.includes(Object.keys(bad)[0]!),
      )
    }
  })

  it('the 30-day TTL rule of moves', () => {
    assert.equal(expiryToken(-1, 0, 1_700_000_000), 0)
    assert.equal(expiryToken(0, 0, 1_700_000_000), 1)
    assert.equal(expiryToken(60, 0, 1_700_000_000), 60)
    assert.equal(expiryToken(2_592_000, 0, 1_700_000_000), 2_592_000)
    assert.equal(expiryToken(2_592_001, 0, 1_700_000_000), 1_702_592_001)
  })

  it('a client opens nothing until used, and close() is idempotent', async () => {
    const client = new PoolClient(validatePool({ hash: 'memjs', servers: ['127.0.0.1:1'] }, 'test'))
    assert.deepEqual(client.stats().servers['127.0.0.1:1'], { state: 'up', role: 'active', requests: 0, errors: 0, movedByClient: 0 })
    await Promise.all([client.close(), client.close()])
  })

  it('a pool with every server deactivating cannot be built into a client', () => {
    const pool = validatePool({ hash: 'memjs', servers: ['10.0.0.1:11211', '10.0.0.2:11211'] }, 'test')
    const client = new PoolClient(pool)
    assert.throws(
      () => client.updatePool({ ...pool, servers: pool.servers.map((s) => ({ ...s, state: 'deactivating' as const })) }),
      (e: unknown) => isPoolClientError(e, 'OPTION_INVALID'),
    )
    void client.close()
  })
})
