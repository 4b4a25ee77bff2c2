/**
 * `memdrain status` shows, per deactivating server, the keys moved off it by pool-aware clients
 * during its current transition, summed from the clients' reports beside the pool file.
 */
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { runCli } from '../helpers/cli.js'
import { startMemcached, type MemcachedServer } from '../helpers/memcached.js'
import { clientReportDir } from '../../src/core/client/index.js'

const work = mkdtempSync(path.join(tmpdir(), 'memdrain-status-clients-'))
const servers: MemcachedServer[] = []
after(async () => {
  await Promise.all(servers.map((s) => s.stop()))
  rmSync(work, { recursive: true, force: true })
})

test('status: keys moved by clients per deactivating server, only from its current transition', async () => {
  servers.push(...(await Promise.all([0, 1, 2].map(() => startMemcached()))))
  const [a, b, c] = servers.map((s) => s.address) as [string, string, string]
  const file = path.join(work, 'memdrain.json')
  const startedAt = '2025-03-01T10:00:00.000Z'
  writeFileSync(
    file,
    JSON.stringify({
      hash: 'php-memcached-libketama',
      clients: 'pool-aware',
      servers: [
        { address: a },
        { address: b, state: 'deactivating', transition: { startedAt, keysAtStart: 100, moved: 40, movedByClients: 3, skipped: { gone: 25 }, threshold: 0.95, handoff: 'move' } },
        { address: c, state: 'deactivating' },
      ],
    }),
  )
  const dir = clientReportDir(file)
  mkdirSync(dir)
  const report = (name: string, moved: Record<string, number>, transitions: Record<string, string>): void =>
    writeFileSync(path.join(dir, `${name}.json`), JSON.stringify({ version: 1, host: name, pid: 1, updatedAt: startedAt, moved, transitions }))
  report('app1-1', { [b]: 12 }, { [b]: startedAt })
  report('app2-2', { [b]: 8, [c]: 5 }, { [b]: startedAt })
  report('app3-3', { [b]: 1000 }, { [b]: '2024-12-01T00:00:00.000Z' }) // an earlier drain of b
  report('app4-4', { [b]: 500 }, {}) // moved before this drain's record existed

  const r = await runCli(['status', '--pool', file, '--json'])
  assert.equal(r.code, 0, r.stderr)
  const byAddress = new Map<string, { movedByClients?: number }>(r.json.result.servers.map((s: { address: string }) => [s.address, s]))
  assert.equal(byAddress.get(a)!.movedByClients, undefined, 'an active server has none')
  assert.equal(byAddress.get(b)!.movedByClients, 20)
  assert.equal(byAddress.get(c)!.movedByClients, 5, 'marked by hand, no record: its untagged counts')

  const human = await runCli(['status', '--pool', file])
  assert.equal(human.code, 0, human.stderr)
  // 25 keys found gone at b, 20 of them moved by clients: 40 + 20 of 100 - 25 + 20 live keys.
  assert.match(human.stdout, new RegExp(`${b}: move hand-off since ${startedAt}: 60 of 95 live keys transitioned, 20 moved by clients \\(63\\.2%`))
  assert.match(human.stdout, new RegExp(`${c}: deactivating, no drain record, 5 moved by clients`))
})
