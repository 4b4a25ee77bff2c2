import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { readFileSync, readdirSync, statSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { startMemcached, type MemcachedServer } from '../helpers/memcached.js'
import { Conns, getAll, startPool, type TestPool } from './drain.fixtures.js'
import { assertPlaced, readPool, seed } from './rebalance.fixtures.js'

/** The built CLI: `memdrain rebalance` exit codes and the --json envelope. Needs `npm run build`. */

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')

interface Run {
  code: number
  json: { status: number; result?: Record<string, unknown> & { plan?: { keysToMove: number; pairs: unknown[] } }; error?: { code: string; message: string } }
}

function cli(args: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [path.join(ROOT, 'bin/run.js'), ...args], { cwd: ROOT, timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1
      try {
        resolve({ code, json: JSON.parse(stdout) as Run['json'] })
      } catch {
        reject(new Error(`exit ${code}, stdout is not one JSON document:\n${stdout}\nstderr:\n${stderr}`))
      }
    })
  })
}

const newest = (dir: string, ext: string): number => Math.max(0, ...readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith(ext)).map((f) => statSync(path.join(dir, f)).mtimeMs))

describe('memdrain rebalance (CLI, --json)', () => {
  const pools: TestPool[] = []
  const spares: MemcachedServer[] = []
  const conns = new Conns()
  before(() => {
    assert.ok(newest(path.join(ROOT, 'dist/core'), '.js') >= newest(path.join(ROOT, 'src/core'), '.ts'), 'dist/ is older than src/: run `npm run build` first')
  })
  after(async () => {
    await conns.close()
    await Promise.all([...pools.map((p) => p.stop()), ...spares.map((s) => s.kill())])
  })

  it('plans with --dry-run, refuses without --yes, rebalances with the copy hand-off, refuses --abort afterwards', async () => {
    const pool = await startPool(3, { hash: 'php-memcached-libketama' })
    pools.push(pool)
    const spare = await startMemcached()
    spares.push(spare)
    const items = await seed(conns, readPool(pool.file), 500)
    const text = readFileSync(pool.file, 'utf8')
    const common = ['--pool', pool.file, '--json', '--spool-dir', path.join(pool.dir, 'spool'), '--rate', '0']

    const plan = await cli(['rebalance', '--add', spare.address, '--dry-run', ...common])
    assert.equal(plan.code, 0, JSON.stringify(plan.json))
    assert.ok(plan.json.result!.plan!.keysToMove > 0)
    assert.ok(plan.json.result!.plan!.pairs.length > 0)
    assert.equal(readFileSync(pool.file, 'utf8'), text)

    const unconfirmed = await cli(['rebalance', '--add', spare.address, ...common])
    assert.equal(unconfirmed.code, 2)
    assert.equal(unconfirmed.json.error!.code, 'USAGE')
    assert.equal(readFileSync(pool.file, 'utf8'), text)

    const bad = await cli(['rebalance', '--remove', '127.0.0.1:1', '--yes', ...common])
    assert.equal(bad.code, 2)

    // The switch command's environment: with only an added server, nothing is removed, but the
    // keys were copied from every old server, and the new pool is the four servers.
    const seen = path.join(pool.dir, 'switch-seen')
    const switchCommand = `env | grep '^MEMDRAIN_' > ${seen}.env && cp "$MEMDRAIN_NEW_POOL" ${seen}.pool.json`
    const r = await cli(['rebalance', '--add', spare.address, '--yes', '--handoff', 'copy', '--switch-command', switchCommand, ...common])
    assert.equal(r.code, 0, JSON.stringify(r.json))
    const env = Object.fromEntries(readFileSync(`${seen}.env`, 'utf8').trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]))
    const old = readPool(pool.file).servers.map((s) => s.address).filter((a) => a !== spare.address)
    assert.deepEqual(env.MEMDRAIN_SOURCE!.split(',').sort(), [...old].sort())
    assert.equal(env.MEMDRAIN_REMOVED, '')
    assert.deepEqual(env.MEMDRAIN_NEW_SERVERS!.split(',').sort(), [...old, spare.address].sort())
    assert.equal(env.MEMDRAIN_NEW_CONFIG, undefined, 'a pool that was not imported has no config to write')
    const newPool = JSON.parse(readFileSync(`${seen}.pool.json`, 'utf8')) as { hash: string; servers: { address: string; state: string }[]; rebalance?: unknown }
    assert.equal(newPool.hash, 'php-memcached-libketama')
    assert.deepEqual(newPool.servers.map((s) => s.address).sort(), [...old, spare.address].sort())
    assert.ok(newPool.servers.every((s) => s.state === 'active') && newPool.rebalance === undefined)
    assert.equal(r.json.status, 0)
    assert.equal(r.json.result!.finished, true)
    const after = readPool(pool.file)
    assert.equal(after.servers.length, 4)
    assert.ok(after.servers.every((s) => s.state === 'active'))
    await assertPlaced(conns, after, items, after.servers.map((s) => s.address))
    assert.ok((await getAll(await conns.get(spare.address), items.map((i) => i.key))).size > 0)

    const abort = await cli(['rebalance', '--abort', '--yes', ...common])
    assert.equal(abort.code, 3)
    assert.equal(abort.json.error!.code, 'NO_REBALANCE')
  })
})
