/**
 * kill -9 of the memdrain CLI at random moments of a drain or a rebalance, then reruns until one finishes:
 * used by the fault suite (a few kills) and by scripts/soak.ts (many). Returns what a person
 * checks afterwards: keys lost, stale (value/flags/TTL not the original), on a wrong server;
 * pool file invalid after a kill; the phase each kill hit.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { parsePoolText } from '../../src/core/pool/validate.js'
import { poolPlacement } from '../../src/core/pool/placement.js'
import { rng } from '../../src/core/local/demo.js'
import { Conns, getAll, setAll } from '../integration/drain.fixtures.js'
import { startMemcached, type MemcachedServer } from './memcached.js'
import { REPO_ROOT } from './cli.js'

export interface KillScenarioOptions {
  seed: number
  /**
   * drain (default): a random server of 4 is drained. rebalance: a pool of 4 gets a fifth server
   * (--add) and, with the move hand-off, loses a random one (--remove); keys start at their
   * owners under the pool of 4.
   */
  job?: 'drain' | 'rebalance'
  keys?: number
  handoff?: 'move' | 'copy'
  /** Kills before the run that may finish. */
  kills?: number
  /** Kill delays are drawn from [minMs, maxMs] after spawn. */
  minMs?: number
  maxMs?: number
  rate?: number
  log?: (line: string) => void
}

export interface KillScenarioResult {
  seed: number
  handoff: 'move' | 'copy'
  job: 'drain' | 'rebalance'
  runs: number
  kills: number
  /** The last progress line before each kill ("(before marking)" when none). */
  killedDuring: string[]
  finalCode: number
  /** drain: the drained server's state; rebalance: 'finished' or 'in progress'. */
  finalState: string
  keys: number
  lost: number
  stale: number
  misplaced: number
  invalidPoolFiles: number
  staleLockTakeovers: number
  samples: string[]
}

/** Deterministic PRNG (mulberry32, the demo's) so a failing seed can be replayed. */
export const prng = rng

interface Run {
  code: number | null
  signal: NodeJS.Signals | null
  stderr: string
  stdout: string
}

function spawnCli(args: string[], killAfterMs: number | undefined): Promise<Run & { killed: boolean }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(REPO_ROOT, 'bin/run.js'), ...args], { cwd: REPO_ROOT, env: { ...process.env, NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    let killed = false
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    const killer =
      killAfterMs === undefined
        ? undefined
        : setTimeout(() => {
            killed = child.exitCode === null
            if (killed) process.kill(child.pid!, 'SIGKILL')
          }, killAfterMs)
    const guard = setTimeout(() => child.kill('SIGKILL'), 90_000)
    child.on('error', reject)
    child.on('close', (code, signal) => {
      if (killer !== undefined) clearTimeout(killer)
      clearTimeout(guard)
      resolve({ code, signal, stderr, stdout, killed })
    })
  })
}

export async function runKillScenario(opts: KillScenarioOptions): Promise<KillScenarioResult> {
  const rnd = prng(opts.seed)
  const handoff = opts.handoff ?? 'move'
  const n = opts.keys ?? 4000
  const log = opts.log ?? (() => undefined)
  const job = opts.job ?? 'drain'
  const servers: MemcachedServer[] = await Promise.all(Array.from({ length: job === 'rebalance' ? 5 : 4 }, () => startMemcached()))
  const initial = servers.slice(0, 4)
  const dir = mkdtempSync(path.join(tmpdir(), 'memdrain-kill-'))
  const file = path.join(dir, 'memdrain.json')
  const conns = new Conns()
  const result: KillScenarioResult = {
    seed: opts.seed,
    handoff,
    job,
    runs: 0,
    kills: 0,
    killedDuring: [],
    finalCode: -1,
    finalState: '',
    keys: n,
    lost: 0,
    stale: 0,
    misplaced: 0,
    invalidPoolFiles: 0,
    staleLockTakeovers: 0,
    samples: [],
  }
  try {
    writeFileSync(file, JSON.stringify({ hash: 'php-memcached-libketama', clients: handoff === 'move' ? 'pool-aware' : 'static', servers: initial.map((s) => ({ address: s.address })) }))
    const src = initial[Math.floor(rnd() * initial.length)]!
    // Values, flags and TTLs vary per key; TTL 0 = none.
    const keys = Array.from({ length: n }, (_, i) => Buffer.from(`kill:${opts.seed}:${i}`))
    const ttlOf = (i: number): number => (i % 3 === 0 ? 0 : i % 3 === 1 ? 3600 : 86400 * 40)
    const valueOf = (i: number): Buffer => Buffer.from(`value-${i}-`.padEnd(20 + (i % 7) * 30, String.fromCharCode(97 + (i % 26))))
    const items = keys.map((key, i) => ({ key, value: valueOf(i), flags: (i * 7919) % 4294967296, ttl: ttlOf(i) === 86400 * 40 ? Math.floor(Date.now() / 1000) + ttlOf(i) : ttlOf(i) }))
    if (job === 'drain') await setAll(await conns.get(src.address), items)
    else {
      // Each key at its owner under the pool of 4, as the application's client put it.
      const before = poolPlacement(parsePoolText(readFileSync(file, 'utf8'), file))
      const byOwner = new Map<string, typeof items>()
      for (const it of items) {
        const owner = before.servers[before.placement.owner(it.key)]!.address
        byOwner.set(owner, [...(byOwner.get(owner) ?? []), it])
      }
      for (const [owner, list] of byOwner) await setAll(await conns.get(owner), list)
    }
    const loadedAt = Date.now()
    const common = ['--pool', file, '--yes', '--json', '--rate', String(opts.rate ?? 1000), '--threshold', '1', '--spool-dir', path.join(dir, 'spool'), '--handoff', handoff]
    const args =
      job === 'drain'
        ? ['drain', src.address, ...common]
        : ['rebalance', '--add', servers[4]!.address, ...(handoff === 'move' ? ['--remove', src.address] : []), ...common]
    if (handoff === 'move') args.push('--client-grace', '0')
    else args.push('--switch-command', 'true')
    const kills = opts.kills ?? 3
    const [minMs, maxMs] = [opts.minMs ?? 300, opts.maxMs ?? 2200]
    let final: Run | undefined
    for (let k = 0; k <= kills + 5; k++) {
      const delay = k < kills ? Math.round(minMs + rnd() * (maxMs - minMs)) : undefined
      const lockBefore = existsSync(`${file}.lock`)
      const run = await spawnCli(args, delay)
      result.runs++
      if (lockBefore && run.code !== 3) result.staleLockTakeovers++
      try {
        parsePoolText(readFileSync(file, 'utf8'), file)
      } catch (err) {
        result.invalidPoolFiles++
        result.samples.push(`pool file invalid after run ${result.runs}: ${(err as Error).message}`)
      }
      if (run.killed) {
        result.kills++
        const lines = run.stderr.trim().split('\n').filter(Boolean)
        result.killedDuring.push(`${delay} ms: ${lines.at(-1)?.slice(0, 100) ?? '(before any output)'}`)
        log(`seed ${opts.seed} ${job} ${handoff}: killed after ${delay} ms during: ${lines.at(-1)?.slice(0, 100) ?? '(before any output)'}`)
        continue
      }
      final = run
      if (run.code === 0) break
      log(`seed ${opts.seed}: run ended ${run.code}: ${run.stdout.slice(0, 300)}`)
      if (k >= kills) continue
    }
    result.finalCode = final?.code ?? -1
    const pool = parsePoolText(readFileSync(file, 'utf8'), file)
    result.finalState = job === 'rebalance' ? (pool.rebalance === undefined ? 'finished' : 'in progress') : (pool.servers.find((s) => s.address === src.address)?.state ?? '?')
    // Check every key: at its owner (the pool without src, or the rebalanced pool), with its value, flags and TTL; nowhere else.
    const remaining = pool.servers.filter((s) => (job === 'rebalance' || s.address !== src.address) && s.state === 'active')
    const pp = poolPlacement({ ...pool, servers: remaining }, remaining)
    const elapsed = (Date.now() - loadedAt) / 1000
    const where = new Map<string, string[]>()
    const at = new Map<string, Map<string, { value: Buffer; flags: number; ttl: number }>>()
    for (const s of servers) {
      const got = await getAll(await conns.get(s.address), keys)
      at.set(s.address, got)
      for (const hex of got.keys()) where.set(hex, [...(where.get(hex) ?? []), s.address])
    }
    for (const [i, key] of keys.entries()) {
      const hex = key.toString('hex')
      const owner = remaining[pp.placement.owner(key)]!.address
      const found = where.get(hex) ?? []
      if (found.some((a) => a !== owner)) {
        result.misplaced++
        if (result.samples.length < 10) result.samples.push(`${key}: on ${found.join(',')}, owner ${owner}`)
      }
      const got = at.get(owner)!.get(hex)
      if (got === undefined) {
        result.lost++
        if (result.samples.length < 10) result.samples.push(`${key}: lost`)
        continue
      }
      const ttl = ttlOf(i)
      const ttlOk = ttl === 0 ? got.ttl === -1 : got.ttl <= ttl && got.ttl >= ttl - elapsed - 5
      if (!got.value.equals(valueOf(i)) || got.flags !== (i * 7919) % 4294967296 || !ttlOk) {
        result.stale++
        if (result.samples.length < 10) result.samples.push(`${key}: value/flags/ttl ${got.value.length}/${got.flags}/${got.ttl}, want ${valueOf(i).length}/${(i * 7919) % 4294967296}/${ttl}`)
      }
    }
    return result
  } finally {
    await conns.close()
    await Promise.all(servers.map((s) => s.kill()))
    rmSync(dir, { recursive: true, force: true })
  }
}

/** The result as a failure message (the first samples only). */
export function describeKillScenario(r: KillScenarioResult): string {
  return JSON.stringify({ ...r, samples: r.samples.slice(0, 5) }, null, 1)
}

/** What every kill scenario must end with: valid pool files, a final exit 0 in `finalState`, nothing lost, stale or misplaced. */
export function assertKillScenarioClean(r: KillScenarioResult, finalState: string): void {
  const report = describeKillScenario(r)
  assert.equal(r.invalidPoolFiles, 0, report)
  assert.equal(r.finalCode, 0, report)
  assert.equal(r.finalState, finalState, report)
  assert.equal(r.lost, 0, report)
  assert.equal(r.stale, 0, report)
  assert.equal(r.misplaced, 0, report)
}
