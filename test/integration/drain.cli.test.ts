import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { statSync, readdirSync, writeFileSync } from 'node:fs'
import { hostname } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { connect, getAll, keysOf, setAll, startPool, type TestPool } from './drain.fixtures.js'

/** The built CLI: exit codes and the --json envelope. Needs `npm run build` (checked below). */

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')

interface Run {
  code: number
  json: Record<string, unknown> & { status: number; result?: Record<string, unknown>; error?: { code: string; message: string; suggestions: string[] }; warnings?: unknown[] }
  stderr: string
}

function cli(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [path.join(ROOT, 'bin/run.js'), ...args], { cwd: ROOT, env: { ...process.env, ...env }, timeout: 20_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1
      try {
        resolve({ code, json: JSON.parse(stdout) as Run['json'], stderr })
      } catch {
        reject(new Error(`exit ${code}, stdout is not one JSON document:\n${stdout}\nstderr:\n${stderr}`))
      }
    })
  })
}

function newestMtime(dir: string, ext: string): number {
  let newest = 0
  for (const f of readdirSync(dir, { recursive: true, encoding: 'utf8' })) if (f.endsWith(ext)) newest = Math.max(newest, statSync(path.join(dir, f)).mtimeMs)
  return newest
}

describe('memdrain drain (CLI, --json)', () => {
  const pools: TestPool[] = []
  before(() => {
    const src = newestMtime(path.join(ROOT, 'src/core'), '.ts')
    const built = newestMtime(path.join(ROOT, 'dist/core'), '.js')
    assert.ok(built >= src, 'dist/ is older than src/core: run `npm run build` first')
  })
  after(async () => {
    await Promise.all(pools.map((p) => p.stop()))
  })

  it('drains with the copy hand-off: exit 0, {status, result, warnings}; the switch command sees MEMDRAIN_REMOVED (the drained server) and MEMDRAIN_SOURCE (every server of this modulo pool)', async () => {
    const pool = await startPool(3)
    pools.push(pool)
    const [src] = pool.servers.map((s) => s.address) as [string]
    const keys = keysOf('cli', 200)
    const c = await connect(src)
    await setAll(c, keys.map((key) => ({ key, value: Buffer.from('v1') })))
    await c.close()
    // The "switch" also rewrites cli0 on the drained server, as a late application write would.
    // memjs is modulo: every server's keys change owner, so every server is a source.
    const script = `if(process.env.MEMDRAIN_SOURCE.split(',').length!==3)process.exit(3);const s=require('net').connect(...process.env.MEMDRAIN_REMOVED.split(':').reverse().map((x,i)=>i===0?Number(x):x));s.on('connect',()=>s.write('ms cli0 2 T0\\r\\nv2\\r\\nmn\\r\\n'));s.on('data',d=>{if(String(d).includes('MN'))process.exit(0)})`
    const r = await cli(['drain', src, '--pool', pool.file, '--json', '--yes', '--handoff', 'copy', '--switch-command', `${process.execPath} -e "${script}"`, '--spool-dir', path.join(pool.dir, 'spool'), '--rate', '0'])
    assert.equal(r.code, 0, JSON.stringify(r.json))
    assert.equal(r.json.status, 0)
    assert.deepEqual(r.json.warnings, [])
    const result = r.json.result!
    assert.equal(result.state, 'removed')
    assert.equal(result.handoff, 'copy')
    assert.equal(result.moved, 200)
    assert.equal(result.caughtUp, 1)
    assert.equal(result.invalidated, 0)
    const owner = pool.chainWithout(src, keys[0]!)[0]!
    const oc = await connect(owner)
    assert.equal((await getAll(oc, [keys[0]!])).get(keys[0]!.toString('hex'))?.value.toString(), 'v2')
    await oc.close()
    const sc = await connect(src)
    assert.equal((await getAll(sc, keys)).size, 0, 'the drained server is flushed')
    await sc.close()
  })

  it('exits 68 below the threshold (move hand-off), the record kept in the pool file', async () => {
    const pool = await startPool(2, { clients: 'pool-aware', server: (i) => (i === 0 ? { itemSizeMax: '2m' } : {}) })
    pools.push(pool)
    const [src] = pool.servers.map((s) => s.address) as [string]
    const c = await connect(src)
    await setAll(c, [...keysOf('p', 20).map((key) => ({ key, value: Buffer.from('x') })), { key: Buffer.from('huge'), value: Buffer.alloc(1500 * 1024) }])
    await c.close()
    const r = await cli(['drain', src, '--pool', pool.file, '--json', '--yes', '--threshold', '1', '--spool-dir', path.join(pool.dir, 'spool')])
    assert.equal(r.code, 68, r.stderr)
    assert.equal(r.json.status, 68)
    assert.equal(r.json.result?.handoff, 'move')
    assert.deepEqual(r.json.result?.skipped, { 'too-large': 1 })
    assert.equal(pool.server(src).state, 'deactivating')
    assert.equal(pool.server(src).transition?.moved, 20)
  })

  it('exits 2 for a server not in the pool, 3 for the last active server', async () => {
    const pool = await startPool(1)
    pools.push(pool)
    const notIn = await cli(['drain', '127.0.0.1:1', '--pool', pool.file, '--json', '--yes'])
    assert.equal(notIn.code, 2)
    assert.equal(notIn.json.status, 2)
    assert.equal(notIn.json.error?.code, 'SERVER_NOT_IN_POOL')
    assert.ok(notIn.json.error.suggestions.length > 0)
    const last = await cli(['drain', pool.servers[0]!.address, '--pool', pool.file, '--json', '--yes', '--handoff', 'move', '--force'])
    assert.equal(last.code, 3)
    assert.equal(last.json.error?.code, 'LAST_ACTIVE_SERVER')
    assert.match(last.json.error.message, /last active server/)
  })

  it('exits 3 with POOL_LOCKED naming the holder', async () => {
    const pool = await startPool(2)
    pools.push(pool)
    const holder = { pid: process.pid, host: hostname(), command: 'memdrain rebalance --add 10.0.0.9:11211', startedAt: new Date().toISOString(), token: 'test' }
    writeFileSync(`${pool.file}.lock`, JSON.stringify(holder))
    const r = await cli(['drain', pool.servers[0]!.address, '--pool', pool.file, '--json', '--yes', '--handoff', 'move', '--force'])
    assert.equal(r.code, 3)
    assert.equal(r.json.error?.code, 'POOL_LOCKED')
    assert.match(r.json.error.message, /memdrain rebalance --add 10\.0\.0\.9:11211/)
    assert.match(r.json.error.message, new RegExp(`pid ${process.pid}`))
    assert.equal(pool.server(pool.servers[0]!.address).state, 'active')
  })

  it('exits 3 with DUMPS_DISABLED for a source started with -X', async () => {
    const pool = await startPool(2, { server: (i) => (i === 0 ? { disableDumps: true } : {}) })
    pools.push(pool)
    const src = pool.servers[0]!.address
    const r = await cli(['drain', src, '--pool', pool.file, '--json', '--yes', '--handoff', 'copy', '--switch-command', 'true'])
    assert.equal(r.code, 3)
    assert.equal(r.json.status, 3)
    assert.equal(r.json.error?.code, 'DUMPS_DISABLED')
    assert.ok(r.json.error.suggestions.length > 0)
    assert.equal(pool.server(src).state, 'active')
  })
})
