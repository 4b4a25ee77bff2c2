import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, writeFileSync, readFileSync, existsSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { spawnSync } from 'node:child_process'
import { parsePoolText, validatePool } from '../../src/core/pool/validate.js'
import { FilePoolStore } from '../../src/core/pool/store.js'
import { resolvePoolStore } from '../../src/core/pool/resolve.js'
import { withServer } from '../../src/core/pool/model.js'
import { MemdrainError } from '../../src/core/errors.js'

const bad = (doc: unknown, field: RegExp): void => {
  assert.throws(
    () => validatePool(doc, 'pool.json'),
    (err: unknown) => err instanceof MemdrainError && err.exitCode === 3 && err.code === 'POOL_INVALID' && field.test(err.message),
  )
}

test('defaults: weight 1, state active, replicas 1, clients static', () => {
  const p = validatePool({ hash: 'memjs', servers: [{ address: '10.0.0.1:11211' }, '10.0.0.2'] }, 'x')
  assert.equal(p.replicas, 1)
  assert.equal(p.clients, 'static')
  assert.deepEqual(p.servers.map((s) => [s.host, s.port, s.weight, s.state]), [['10.0.0.1', 11211, 1, 'active'], ['10.0.0.2', 11211, 1, 'active']])
})

test('every invalid field is named', () => {
  bad({ hash: 'nope', servers: ['a:1'] }, /pool\.json: hash: unknown hash "nope"/)
  bad({ servers: ['a:1'] }, /pool\.json: hash: is required/)
  bad({ hash: 'memjs', servers: [] }, /servers: must be a non-empty array/)
  bad({ hash: 'memjs', servers: ['a:1', 'a:1'] }, /servers\[1\]\.address: "a:1" duplicates servers\[0\]/)
  bad({ hash: 'memjs', servers: [{ address: 'a:99999' }] }, /servers\[0\]\.address: .*port/)
  bad({ hash: 'memjs', servers: [{ address: 'a:1', weight: 0 }] }, /servers\[0\]\.weight: must be a whole number > 0/)
  bad({ hash: 'memjs', servers: [{ address: 'a:1', weight: -2 }] }, /servers\[0\]\.weight/)
  bad({ hash: 'memjs', replicas: 3, servers: ['a:1', 'b:1'] }, /replicas: is 3 but only 2 server\(s\) are active/)
  bad({ hash: 'memjs', servers: [{ address: 'a:1', state: 'draining' }] }, /servers\[0\]\.state: must be one of/)
  bad({ hash: 'memjs', servers: [{ address: 'a:1', state: 'removed' }] }, /no server is "active"/)
  bad({ hash: 'memjs', servers: ['a:1'], replica: 2 }, /pool\.json: replica: unknown field/)
  bad({ hash: 'twemproxy-ketama-md5-named', servers: ['a:1'] }, /servers\[0\]\.name: is required/)
  assert.throws(() => parsePoolText('{"hash": ', 'p.json'), /p\.json: \(document\): is not valid JSON/)
})

test('the file store writes atomically, user-only, and refuses to overwrite a concurrent change', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'memdrain-pool-'))
  try {
    const file = path.join(dir, 'memdrain.json')
    writeFileSync(file, JSON.stringify({ hash: 'memjs', servers: ['a:1', 'b:1'] }))
    const store = new FilePoolStore(file)
    const snap = await store.load()
    const rev = await store.save(withServer(snap.pool, 'a:1', (s) => ({ ...s, state: 'deactivating' })), snap.revision)
    assert.equal((spawnSync('stat', ['-c', '%a', file]).stdout.toString().trim()), '600')
    const again = await store.load()
    assert.equal(again.revision, rev)
    assert.equal(again.pool.servers[0]!.state, 'deactivating')
    writeFileSync(file, readFileSync(file, 'utf8').replace('deactivating', 'active'))
    await assert.rejects(store.save(again.pool, again.revision), /changed by someone else/)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('the lock refuses a live holder, names it, and takes over a dead one', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'memdrain-lock-'))
  try {
    const store = new FilePoolStore(path.join(dir, 'memdrain.json'))
    const held = await store.lock('memdrain drain a:1')
    await assert.rejects(store.lock('memdrain drain b:1'), (err: MemdrainError) => err.code === 'POOL_LOCKED' && /memdrain drain a:1/.test(err.message) && err.exitCode === 3)
    await held.release()
    assert.equal(existsSync(path.join(dir, 'memdrain.json.lock')), false)
    // A lock left by a process that died.
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']).stdout.toString()
    writeFileSync(path.join(dir, 'memdrain.json.lock'), JSON.stringify({ pid: Number(dead), host: (await import('node:os')).hostname(), command: 'memdrain drain x', startedAt: '', token: 't' }))
    const taken = await store.lock('memdrain mark')
    assert.equal(taken.tookOver?.pid, Number(dead))
    await taken.release()
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('pool selection: --servers needs --hash, excludes --pool, and MEMDRAIN_POOL is honoured', () => {
  assert.throws(() => resolvePoolStore({ servers: 'a:1' }), (e: MemdrainError) => e.exitCode === 2)
  assert.throws(() => resolvePoolStore({ servers: 'a:1', hash: 'memjs', pool: 'x.json' }), (e: MemdrainError) => e.exitCode === 2)
  assert.equal(resolvePoolStore({ env: { MEMDRAIN_POOL: '/tmp/p.json' } }).location, '/tmp/p.json')
  assert.equal(resolvePoolStore({ cwd: '/srv', env: {} }).location, '/srv/memdrain.json')
})
