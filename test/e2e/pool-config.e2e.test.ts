import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { runCli } from '../helpers/cli.js'

/** `pool import` / `pool export` through the built CLI: files, refusals, --json shapes. */

describe('memdrain pool import / export (CLI)', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'memdrain-pool-config-'))
  after(() => rmSync(dir, { recursive: true, force: true }))
  const nc = path.join(dir, 'nutcracker.yml')
  writeFileSync(nc, 'cache:\n  listen: 127.0.0.1:22121\n  timeout: 400\n  servers:\n   - 10.0.0.2:11211:1\n   - 10.0.0.1:11211:1\n')
  const poolFile = path.join(dir, 'memdrain.json')

  it('writes the pool file, refuses to replace it without --force, prints with --print; notes in --json', async () => {
    const r = await runCli(['pool', 'import', nc, '--from', 'twemproxy', '--pool', poolFile, '--json'])
    assert.equal(r.code, 0, r.stdout + r.stderr)
    assert.equal(r.json.result.hash, 'twemproxy-ketama-fnv1a-64')
    assert.equal(r.json.result.file, poolFile)
    assert.ok(r.json.result.notes.some((n: string) => /listen, timeout/.test(n)), JSON.stringify(r.json.result.notes))
    const written = JSON.parse(readFileSync(poolFile, 'utf8'))
    assert.deepEqual(written.origin, { format: 'twemproxy', file: nc, pool: 'cache' })
    assert.deepEqual(written.servers.map((s: { address: string }) => s.address), ['10.0.0.1:11211', '10.0.0.2:11211'])

    const again = await runCli(['pool', 'import', nc, '--from', 'twemproxy', '--pool', poolFile, '--json'])
    assert.equal(again.code, 2)
    assert.match(again.json.error.message, /exists; not replaced/)
    assert.equal((await runCli(['pool', 'import', nc, '--from', 'twemproxy', '--pool', poolFile, '--force'])).code, 0)

    const printed = await runCli(['pool', 'import', nc, '--from', 'twemproxy', '--print'])
    assert.equal(printed.code, 0)
    assert.equal(JSON.parse(printed.stdout).hash, 'twemproxy-ketama-fnv1a-64')

    const missing = await runCli(['pool', 'import', path.join(dir, 'nope.yml'), '--from', 'twemproxy', '--print', '--json'])
    assert.equal(missing.code, 3)
    assert.equal(missing.json.error.code, 'CONFIG_UNREADABLE')
  })

  it('exports the active servers: twemproxy from the imported file, and a server list', async () => {
    const tw = await runCli(['pool', 'export', '--pool', poolFile, '--to', 'twemproxy'])
    assert.equal(tw.code, 0, tw.stderr)
    assert.equal(tw.stdout, readFileSync(nc, 'utf8').replace(/\n {3}- /g, '\n    - '), 'the imported file, servers unchanged')
    const list = await runCli(['pool', 'export', '--pool', poolFile, '--to', 'servers', '--json'])
    assert.equal(list.json.result.config, '10.0.0.1:11211,10.0.0.2:11211\n')
    const mc = await runCli(['pool', 'export', '--pool', poolFile, '--to', 'mcrouter', '--json'])
    assert.equal(mc.code, 3)
    assert.match(mc.json.error.message, /not an mcrouter strategy/)
  })
})
