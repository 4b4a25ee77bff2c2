import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { spawn } from 'node:child_process'
import { startMemcached } from '../test/helpers/memcached.js'
import { MetaConnection, MetaPayload, parseAddress } from '../src/core/protocol/index.js'
const N = Number(process.argv[2] ?? 100000)
const flagsets = process.argv.slice(3).map((x) => x.split(' ').filter(Boolean))
for (const flags of flagsets.length ? flagsets : [[]]) {
  const s = await Promise.all([0, 1, 2, 3].map(() => startMemcached({ threads: 1, memoryMb: 1024 })))
  const conn = await MetaConnection.connect(parseAddress(s[0]!.address), { requestTimeoutMs: 30000 })
  const V = Buffer.alloc(100, 0x2e)
  const p = new MetaPayload(1 << 20)
  for (let i = 0; i < N; i++) { p.command('ms', Buffer.from(`bench:${i}`)).size(100).flag('T', 0).flag('q').end(V); if (p.length > 256 * 1024) await conn.batch(p.noop().take(), () => undefined) }
  await conn.batch(p.noop().take(), () => undefined)
  await conn.close()
  await new Promise((r) => setTimeout(r, 1500))
  const dir = mkdtempSync(path.join(tmpdir(), 'zz-'))
  const file = path.join(dir, 'pool.json')
  writeFileSync(file, JSON.stringify({ hash: 'php-memcached-libketama', servers: s.map((x) => ({ address: x.address })) }))
  const child = spawn('/usr/bin/time', ['-f', 'CPU %U %S', 'node', ...flags, '/work/main/bin/run.js', 'drain', s[0]!.address, '--pool', file, '--yes', '--rate', '0', '--bandwidth', '0', '--handoff', 'move', '--force', '--json', '--spool-dir', path.join(dir, 'spool')], { stdio: ['ignore', 'ignore', 'pipe'] })
  let err = ''
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()))
  const t0 = performance.now()
  const ru = await new Promise<NodeJS.ResourceUsage>((resolve) => {
    // wait4-style: rusage of the child via /proc before it is reaped is racy; use process.resourceUsage of children is not exposed: read /proc at exit via 'exit' + times
    child.on('exit', () => resolve(process.resourceUsage()))
  })
  void ru
  const m = /CPU ([\d.]+) ([\d.]+)/.exec(err)
  console.log(flags.join(' ') || '(default)', 'wall', ((performance.now() - t0) / 1000).toFixed(2), 'cpu', m ? (Number(m[1]) + Number(m[2])).toFixed(2) : err.slice(-300))
  await Promise.all(s.map((x) => x.kill()))
}
