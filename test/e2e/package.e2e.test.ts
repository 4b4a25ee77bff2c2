/**
 * The package as users get it: a tarball packed from a fresh clone (`npm pack` runs `prepack`,
 * which builds dist/, the manifest and the command reference) installs globally into a temporary
 * prefix and runs `status` and `drain` against real memcached; another project imports
 * `{ PoolClient } from 'memdrain'`. The tarball ships what the README links and no source map
 * that points at a file it lacks; bin/dev.js (needs the dev-only tsx) is not shipped.
 *
 * The clone reuses this checkout's node_modules (same lockfile) to build, so the test costs one
 * `npm install -g` of the runtime dependencies, not a full `npm ci`.
 */
import { describe, it, after, before } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { REPO_ROOT } from '../helpers/cli.js'
import { connect, keysOf, setAll, startPool, type TestPool } from '../integration/drain.fixtures.js'

const run = promisify(execFile)
const work = mkdtempSync(path.join(tmpdir(), 'memdrain-pack-'))
const prefix = path.join(work, 'prefix')
const pools: TestPool[] = []
let tarball = ''
let files: string[] = []

async function sh(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<{ stdout: string; stderr: string }> {
  return run(cmd, args, { cwd: opts.cwd ?? work, env: { ...process.env, NO_COLOR: '1', ...opts.env }, maxBuffer: 64 * 1024 * 1024, timeout: 300_000 })
}

after(async () => {
  await Promise.all(pools.map((p) => p.stop()))
  rmSync(work, { recursive: true, force: true })
})

describe('the packed tarball', () => {
  before(async () => {
    const clone = path.join(work, 'clone')
    await sh('git', ['clone', '--quiet', '--no-hardlinks', REPO_ROOT, clone])
    symlinkSync(path.join(REPO_ROOT, 'node_modules'), path.join(clone, 'node_modules'))
    const packed = await sh('npm', ['pack', '--json', '--loglevel=error'], { cwd: clone })
    const info = (JSON.parse(packed.stdout) as { filename: string; files: { path: string }[] }[])[0]!
    tarball = path.join(clone, info.filename)
    files = info.files.map((f) => f.path)
    mkdirSync(prefix)
    await sh('npm', ['install', '-g', '--prefix', prefix, '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error', tarball])
  })

  it('ships dist, the manifest, the README and what it links, LICENSE; no dev entry point; every source map resolvable', () => {
    for (const f of ['bin/run.js', 'dist/index.js', 'dist/commands/drain.js', 'oclif.manifest.json', 'README.md', 'LICENSE', 'docs/errors.md', 'docs/commands.md', 'src/core/client/README.md']) {
      assert.ok(files.includes(f), `${f} in the tarball`)
    }
    assert.ok(!files.includes('bin/dev.js'), 'bin/dev.js needs tsx, a dev dependency')
    const readme = readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8')
    for (const m of readme.matchAll(/\]\(((?:docs|src)\/[^)#]+)\)/g)) assert.ok(files.includes(m[1]!), `README links ${m[1]}, which the tarball lacks`)
    const installed = path.join(prefix, 'lib/node_modules/memdrain')
    for (const f of files.filter((x) => x.endsWith('.js.map'))) {
      const map = JSON.parse(readFileSync(path.join(installed, f), 'utf8')) as { sources: string[]; sourcesContent?: (string | null)[] }
      map.sources.forEach((s, i) => {
        const ok = typeof map.sourcesContent?.[i] === 'string' || existsSync(path.resolve(path.dirname(path.join(installed, f)), s))
        assert.ok(ok, `${f} points at ${s}, neither shipped nor inlined`)
      })
    }
  })

  it('installed globally, `memdrain status` and `memdrain drain` run; another project imports PoolClient', async () => {
    const bin = path.join(prefix, 'bin/memdrain')
    const version = await sh(bin, ['--version'])
    assert.match(version.stdout, /^memdrain\/\d+\.\d+\.\d+ /)
    const p = await startPool(2, { clients: 'pool-aware' })
    pools.push(p)
    const src = p.servers[0]!.address
    const c = await connect(src)
    await setAll(c, keysOf('pkg', 100).map((key) => ({ key, value: Buffer.from('v') })))
    await c.close()
    const status = await sh(bin, ['status', '--pool', p.file, '--json'])
    assert.equal((JSON.parse(status.stdout) as { status: number }).status, 0)
    const drain = await sh(bin, ['drain', src, '--pool', p.file, '--yes', '--json', '--client-grace', '0', '--spool-dir', path.join(p.dir, 'spool')])
    const result = (JSON.parse(drain.stdout) as { result: { moved: number; state: string } }).result
    assert.equal(result.moved, 100)
    assert.equal(result.state, 'removed')

    // An application: `import { PoolClient } from 'memdrain'` resolves to the installed package.
    const app = path.join(work, 'app')
    mkdirSync(path.join(app, 'node_modules'), { recursive: true })
    symlinkSync(path.join(prefix, 'lib/node_modules/memdrain'), path.join(app, 'node_modules/memdrain'))
    writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', type: 'module', private: true }))
    writeFileSync(
      path.join(app, 'main.js'),
      `import { PoolClient } from 'memdrain'
const cache = await PoolClient.fromPoolFile(process.argv[2], { watch: false, report: false })
await cache.set('app:1', 'hello')
console.log(String(await cache.get('app:1')), cache.locate('app:1').chain.join(','))
await cache.close()
`,
    )
    const out = await sh(process.execPath, ['main.js', p.file], { cwd: app })
    assert.equal(out.stdout.trim(), `hello ${p.servers[1]!.address}`)
    assert.deepEqual(readdirSync(path.join(app, 'node_modules')), ['memdrain'])
  })
})
