/**
 * The etcd pool store against a real etcd: validated loads, compare-and-swap saves, the leased
 * job lock (refusal naming the holder, expiry of a crashed holder's lock, takeover notice),
 * client reports summed per server, and errors that never show credentials.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import { EtcdPoolStore, parseEtcdLocation } from '../../src/core/pool/etcd-store.js'
import { resolvePoolStore } from '../../src/core/pool/resolve.js'
import { validatePool } from '../../src/core/pool/validate.js'
import { withServer } from '../../src/core/pool/model.js'
import { sumStoreMigrations } from '../../src/core/client/migration.js'
import { MemdrainError } from '../../src/core/errors.js'
import { rejectsWithCode } from '../helpers/assert.js'
import { startEtcd, type EtcdServer } from '../helpers/etcd.js'
import { REPO_ROOT } from '../helpers/cli.js'

const POOL = validatePool({ hash: 'memjs', servers: ['10.0.0.1:11211', '10.0.0.2:11211', '10.0.0.3:11211'] }, 'test')

describe('EtcdPoolStore', () => {
  let etcd: EtcdServer
  let n = 0
  const fresh = (opts: { lockTtlSeconds?: number } = {}): EtcdPoolStore => new EtcdPoolStore(etcd.poolUrl(`/memdrain/store-${++n}`), {}, opts)

  before(async () => {
    etcd = await startEtcd()
  })
  after(async () => {
    await etcd.remove()
  })

  it('saves the first pool, loads it validated, and refuses a save on a stale revision', async () => {
    const store = fresh()
    await rejectsWithCode(store.load(), 'POOL_NOT_FOUND', 3)
    const rev1 = await store.save(POOL, await store.currentRevision())
    const snap = await store.load()
    assert.equal(snap.revision, rev1)
    assert.deepEqual(snap.pool.servers.map((s) => s.address), POOL.servers.map((s) => s.address))
    // Another writer changes it: the first one's save on the old revision is refused.
    const other = new EtcdPoolStore(store.location)
    const rev2 = await other.save(withServer(snap.pool, '10.0.0.3:11211', (s) => ({ ...s, state: 'deactivating' })), snap.revision)
    assert.notEqual(rev2, rev1)
    const err = await rejectsWithCode(store.save(snap.pool, snap.revision), 'POOL_CHANGED', 3)
    assert.match(err.message, /changed by someone else/)
    assert.equal((await store.load()).pool.servers[2]!.state, 'deactivating')
    // A save on an absent key needs revision 0: a second "first save" is refused too.
    await rejectsWithCode(store.save(POOL, '0'), 'POOL_CHANGED', 3)
    store.close()
    other.close()
  })

  it('validates the stored document and names the field', async () => {
    const store = fresh()
    await store.client.put(store.poolKey, JSON.stringify({ hash: 'memjs', servers: [{ address: 'a:1', weight: 0 }] }))
    const err = await rejectsWithCode(store.load(), 'POOL_INVALID', 3)
    assert.match(err.message, /servers\[0\]\.weight/)
    assert.match(err.message, /etcd:\/\/127\.0\.0\.1:\d+\/memdrain\/store-\d+/)
    store.close()
  })

  it('the lock: a second holder is refused naming the first; release frees it', async () => {
    const a = fresh()
    const b = new EtcdPoolStore(a.location)
    const held = await a.lock('memdrain drain 10.0.0.3:11211')
    const err = await rejectsWithCode(b.lock('memdrain mark x removed'), 'POOL_LOCKED', 3)
    assert.match(err.message, new RegExp(`\`memdrain drain 10\\.0\\.0\\.3:11211\` \\(pid ${process.pid} on `))
    await held.release()
    const notices: string[] = []
    b.onNotice = (m) => notices.push(m)
    const second = await b.lock('memdrain mark x removed')
    assert.equal(second.tookOver, undefined, 'a released lock is not a takeover')
    assert.deepEqual(notices, [])
    await second.release()
    a.close()
    b.close()
  })

  /** A child process that takes the lock (TTL 2 s) and holds it until killed. */
  const lockingChild = async (store: EtcdPoolStore) => {
    const script = `
      import { EtcdPoolStore } from './src/core/pool/etcd-store.ts'
      const s = new EtcdPoolStore(${JSON.stringify(store.location)}, {}, { lockTtlSeconds: 2 })
      await s.lock('memdrain drain 10.0.0.1:11211')
      process.stdout.write('locked\\n')
      setInterval(() => {}, 1000)
    `
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    while (!out.includes('locked')) {
      if (child.exitCode !== null) assert.fail('the child exited before locking')
      await sleep(50)
    }
    return child
  }

  it('a SIGKILLed holder of this machine and PID namespace: its lock is taken over at once, and said so', async () => {
    const store = fresh({ lockTtlSeconds: 2 })
    const child = await lockingChild(store)
    await rejectsWithCode(store.lock('memdrain drain 10.0.0.2:11211'), 'POOL_LOCKED', 3)
    child.kill('SIGKILL')
    await once(child, 'exit')
    const notices: string[] = []
    store.onNotice = (m) => notices.push(m)
    const held = await store.lock('memdrain drain 10.0.0.2:11211')
    assert.equal(held.tookOver?.pid, child.pid)
    assert.equal(notices.length, 1)
    assert.match(notices[0]!, new RegExp(`pid ${child.pid} .*no longer running on this host`))
    await held.release()
    store.close()
  })

  it('a SIGKILLed holder elsewhere: its lock expires with its lease; the next job says whose it was and when it expired', async () => {
    const store = fresh({ lockTtlSeconds: 2 })
    const child = await lockingChild(store)
    // Seen from "another host": the holder's process space is not ours, so only its lease can free it.
    const { kv } = await store.client.get(store.client.key('lock'))
    assert.ok(kv !== undefined)
    await store.client.put(kv.key, JSON.stringify({ ...JSON.parse(kv.value), space: 'another-machine/pid:[1]' }), kv.lease)
    const refused = await rejectsWithCode(store.lock('memdrain drain 10.0.0.2:11211'), 'POOL_LOCKED', 3)
    assert.match(refused.message, new RegExp(`pid ${child.pid}`))
    const killedAt = Date.now()
    child.kill('SIGKILL')
    await once(child, 'exit')
    // Within TTL + etcd's lease check, the lock is free again.
    let held
    const notices: string[] = []
    store.onNotice = (m) => notices.push(m)
    for (;;) {
      try {
        held = await store.lock('memdrain drain 10.0.0.2:11211')
        break
      } catch (err) {
        assert.ok(err instanceof MemdrainError && err.code === 'POOL_LOCKED', String(err))
        assert.ok(Date.now() - killedAt < 10_000, 'the lock of a dead holder did not expire within 10 s')
        await sleep(200)
      }
    }
    console.log(`# lock of a SIGKILLed holder free again after ${Date.now() - killedAt} ms (lease TTL 2 s)`)
    assert.equal(held.tookOver?.pid, child.pid)
    assert.equal(held.tookOver?.command, 'memdrain drain 10.0.0.1:11211')
    const expiredAt = Date.parse(held.tookOver?.expiredAt ?? '')
    assert.ok(expiredAt > killedAt - 3000 && expiredAt < Date.now() + 1000, `expiredAt ${held.tookOver?.expiredAt} is not around the kill`)
    assert.equal(notices.length, 1)
    assert.match(notices[0]!, new RegExp(`\`memdrain drain 10\\.0\\.0\\.1:11211\` \\(pid ${child.pid} on .*lease expired at about`))
    await held.release()
    store.close()
  })

  it('client reports: one key per client, summed per server for the current transition only', async () => {
    const store = fresh()
    const started = '2025-01-01T00:00:00.000Z'
    const pool = withServer(POOL, '10.0.0.3:11211', (s) => ({ ...s, state: 'deactivating', transition: { startedAt: started, updatedAt: started, keysAtStart: 10, moved: 0, inPlace: 0, movedByClients: 0, skipped: {}, failed: 0, conflicts: 0, threshold: 0.95, handoff: 'move', passes: 0 } }))
    await store.save(pool, '0')
    const report = (moved: number, tag: string) => ({ version: 1, host: 'h', pid: 1, updatedAt: started, moved: { '10.0.0.3:11211': moved }, transitions: { '10.0.0.3:11211': tag } })
    // 20 "hosts" write at once: no update is lost (each owns its key).
    await Promise.all(Array.from({ length: 20 }, (_, i) => store.writeClientReport(`host${i}-1`, report(i + 1, started))))
    await store.writeClientReport('old-host-1', report(1000, '2024-01-01T00:00:00.000Z'))
    const sums = await sumStoreMigrations(store, (await store.load()).pool)
    assert.equal(sums.get('10.0.0.3:11211'), (20 * 21) / 2)
    store.close()
  })

  it('etcd:// locations: several endpoints, credentials refused and never echoed, unreachable named without them', async () => {
    assert.deepEqual(parseEtcdLocation('etcd://a:2379,[::1]:2380/x/y/'), { endpoints: [{ host: 'a', port: 2379 }, { host: '::1', port: 2380 }], prefix: '/x/y' })
    const secret = 's3cr3t-pw'
    assert.throws(() => resolvePoolStore({ pool: `etcd://root:${secret}@127.0.0.1:2379/p` }), (err: unknown) => err instanceof MemdrainError && err.exitCode === 2 && !err.message.includes(secret) && !err.suggestions.join(' ').includes(secret))
    assert.throws(() => resolvePoolStore({ pool: 'etcd://127.0.0.1:2379' }), /has no PREFIX/)
    // A dead endpoint first, then the live one: the store fails over.
    const dead = await (await import('../helpers/memcached.js')).freePort()
    const store = resolvePoolStore({ pool: `etcd://127.0.0.1:${dead},${etcd.endpoint}/memdrain/failover`, env: { MEMDRAIN_ETCD_PASSWORD: secret } }) as EtcdPoolStore
    await store.save(POOL, '0')
    assert.equal((await store.load()).pool.servers.length, 3)
    store.close()
    const unreachable = new EtcdPoolStore(`etcd://127.0.0.1:${dead}/p`, { MEMDRAIN_ETCD_USERNAME: 'root', MEMDRAIN_ETCD_PASSWORD: secret })
    const err = await rejectsWithCode(unreachable.load(), 'POOL_STORE_UNREACHABLE', 3)
    assert.ok(!JSON.stringify({ m: err.message, s: err.suggestions }).includes(secret))
    assert.match(err.message, new RegExp(`127\\.0\\.0\\.1:${dead}`))
    unreachable.close()
  })
})
