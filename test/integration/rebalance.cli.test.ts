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

    const r = await cli(['rebalance', '--add', spare.address, '--yes', '--handoff', 'copy', '--switch-command', 'true', ...common])
    assert.equal(r.code, 0, JSON.stringify(r.json))
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
