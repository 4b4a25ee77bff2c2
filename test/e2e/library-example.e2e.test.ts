/**
 * README's library example (examples/library.ts) runs as documented against `memdrain demo`'s
 * pool: a first run loads every user, a second run after `memdrain mark … deactivating` hits
 * every user and moves the deactivating server's keys, and `memdrain status` counts those moves.
 */
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { runCli, REPO_ROOT } from '../helpers/cli.js'

const work = mkdtempSync(path.join(tmpdir(), 'memdrain-example-'))
const poolFile = path.join(work, 'demo.json')
let started = false
after(async () => {
  if (started) await runCli(['demo', '--stop', '--pool', poolFile])
  rmSync(work, { recursive: true, force: true })
})

function runExample(): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', 'examples/library.ts', poolFile], { cwd: REPO_ROOT, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr })
    })
  })
}

test('examples/library.ts against a demo pool, before and while a server is deactivating', async () => {
  const demo = await runCli(['demo', '--pool', poolFile, '--keys', '0', '--json'])
  assert.equal(demo.code, 0, demo.stderr)
  started = true
  const servers = (JSON.parse(readFileSync(poolFile, 'utf8')) as { servers: { address: string }[] }).servers.map((s) => s.address)

  const first = await runExample()
  assert.equal(first.code, 0, first.stderr)
  assert.match(first.stdout, /^users read: 50, loaded from the database: 50$/m)
  assert.match(first.stdout, /^lock taken: true, taken again while held: false$/m)
  assert.match(first.stdout, /^hits 0, misses 50, fallback hits 0, moved by this client 0$/m)

  const keys = Array.from({ length: 50 }, (_, i) => `example:user:${i + 1}`)
  const located = await runCli(['locate', '--pool', poolFile, '--json', ...keys])
  assert.equal(located.code, 0, located.stderr)
  const drained = servers[1]!
  const onDrained = (located.json.result as { server: string }[]).filter((l) => l.server === drained).length
  assert.ok(onDrained > 0, 'the server to mark holds some users')

  const mark = await runCli(['mark', drained, 'deactivating', '--pool', poolFile, '--json'])
  assert.equal(mark.code, 0, mark.stderr)
  const second = await runExample()
  assert.equal(second.code, 0, second.stderr)
  assert.match(second.stdout, /^users read: 50, loaded from the database: 0$/m)
  assert.match(second.stdout, new RegExp(`^hits 50, misses 0, fallback hits ${onDrained}, moved by this client ${onDrained}$`, 'm'))

  const status = await runCli(['status', '--pool', poolFile, '--json'])
  assert.equal(status.code, 0, status.stderr)
  const row = (status.json.result.servers as { address: string; movedByClients?: number }[]).find((s) => s.address === drained)!
  assert.equal(row.movedByClients, onDrained)
  // As README shows it: the marked server's line under the table.
  const human = await runCli(['status', '--pool', poolFile])
  assert.equal(human.code, 0, human.stderr)
  assert.match(human.stdout, new RegExp(`^${drained.replaceAll('.', '\\.')}: .*0 of 0 live keys transitioned, ${onDrained} moved by clients`, 'm'))
})
