/**
 * The copy hand-off under a real PHP application (issue 12's workload):
 *
 *   npm run build && node --import tsx scripts/bench-php-copy-handoff.ts [--keys 200000] [--rate 3000] [--writes 0.1] [--runs 5] [--drain-rate 20000]
 *
 * Per run: 3 memcached servers, a static pool (php-memcached-libketama); every key seeded at its
 * owner as "key#1"; scripts/php/readthrough-app.php (php-cli + php-memcached) reads through with a
 * Zipf (s = 1) choice of keys at --rate requests/s, --writes of them writes; after a warm-up,
 * `memdrain drain` (the built CLI) drains the first server with the copy hand-off, its switch
 * command asking the application to switch its server list (and waiting until it has). The
 * application runs 10 s past its switch and reports stale reads (a hit older than its database's
 * version) with their age (since the write that superseded them), and the hit ratio of the
 * drained server's keys after the switch. Goals: no stale read older than 50 ms, hit ratio ≥ 99 %.
 *
 * Other processes on the machine disturb the figures: rerun on a quiet machine.
 */
import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
import { startMemcached } from '../test/helpers/memcached.js'
import { MetaConnection, MetaPayload, parseAddress } from '../src/core/protocol/index.js'
import { poolPlacement } from '../src/core/pool/placement.js'
import { parsePoolText } from '../src/core/pool/validate.js'

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..')
const { values: argv } = parseArgs({
  options: {
    keys: { type: 'string', default: '200000' },
    rate: { type: 'string', default: '3000' },
    writes: { type: 'string', default: '0.1' },
    runs: { type: 'string', default: '5' },
    'drain-rate': { type: 'string', default: '20000' },
    warmup: { type: 'string', default: '5' },
  },
})

function run(cmd: string, args: string[], opts: { cwd?: string } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd ?? ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, stdout, stderr }))
  })
}

async function oneRun(i: number): Promise<Record<string, unknown>> {
  const servers = await Promise.all([0, 1, 2].map(() => startMemcached({ memoryMb: 256 })))
  const dir = mkdtempSync(path.join(tmpdir(), 'memdrain-php-bench-'))
  try {
    const file = path.join(dir, 'memdrain.json')
    writeFileSync(file, JSON.stringify({ hash: 'php-memcached-libketama', clients: 'static', servers: servers.map((s) => ({ address: s.address })) }))
    const pp = poolPlacement(parsePoolText(JSON.stringify({ hash: 'php-memcached-libketama', servers: servers.map((s) => ({ address: s.address })) }), file))
    const conns = await Promise.all(servers.map((s) => MetaConnection.connect(parseAddress(s.address))))
    const n = Number(argv.keys)
    for (let k = 0; k < n; k += 2000) {
      const payloads = servers.map(() => new MetaPayload())
      for (let j = k; j < Math.min(n, k + 2000); j++) {
        const key = Buffer.from(`php:${j}`)
        payloads[pp.placement.owner(key)]!.command('ms', key).size(`php:${j}#1`.length).flags('q').end(Buffer.from(`php:${j}#1`))
      }
      await Promise.all(conns.map((c, s) => c.batch(payloads[s]!.noop().take(), () => undefined)))
    }
    await Promise.all(conns.map((c) => c.close()))
    const drained = servers[0]!.address
    const req = path.join(dir, 'switch-req')
    const ack = path.join(dir, 'switch-ack')
    const app = run('php', [path.join(ROOT, 'scripts/php/readthrough-app.php'), servers.map((s) => s.address).join(','), drained, String(n), argv.rate!, argv.writes!, req, ack, '10', '600'])
    await sleep(Number(argv.warmup) * 1000)
    const started = Date.now()
    const drain = await run(process.execPath, [
      'bin/run.js', 'drain', drained, '--pool', file, '--yes', '--json', '--handoff', 'copy', '--rate', argv['drain-rate']!, '--spool-dir', path.join(dir, 'spool'),
      '--switch-command', `touch ${req}; while [ ! -f ${ack} ]; do sleep 0.005; done`,
    ])
    const drainSeconds = (Date.now() - started) / 1000
    const a = await app
    if (a.code !== 0) throw new Error(`the PHP app failed: ${a.stderr.slice(-1000)}`)
    const report = JSON.parse(a.stdout.trim().split('\n').at(-1)!) as Record<string, unknown>
    const d = JSON.parse(drain.stdout) as { status?: number; result?: Record<string, unknown> }
    const r = (d.result ?? d) as Record<string, unknown>
    const summary = {
      run: i,
      drainExit: drain.code,
      drainSeconds,
      caughtUp: r.caughtUp,
      invalidated: r.invalidated,
      followed: r.followed,
      ...report,
      switchedBeforeExit: existsSync(ack),
    }
    console.log(JSON.stringify(summary))
    return summary
  } finally {
    await Promise.all(servers.map((s) => s.kill()))
    rmSync(dir, { recursive: true, force: true })
  }
}

const all: Record<string, unknown>[] = []
for (let i = 1; i <= Number(argv.runs); i++) all.push(await oneRun(i))
const num = (k: string): number[] => all.map((x) => Number(x[k]))
console.log(
  `${all.length} run(s), ${argv.keys} keys, ${argv.rate} req/s asked (${num('requestsPerSecond').join(', ')} done), ${argv.writes} writes: ` +
    `stale reads ${num('stale').join(', ')}, over 50 ms old ${num('staleOver50ms').join(', ')}, oldest ${num('oldestStaleSeconds').map((x) => x.toFixed(3)).join(', ')} s; ` +
    `hit ratio of the drained server's keys in the 10 s after the switch ${all.map((x) => (x.drainedKeysAfterSwitch as { hitRatio: number }).hitRatio).join(', ')}`,
)
process.exit(0)
