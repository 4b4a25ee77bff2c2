import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, execFileSync } from 'node:child_process'
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { runDrain, type DrainOptions } from '../../src/core/jobs/drain.js'
import { runRebalance, type RebalanceOptions } from '../../src/core/jobs/rebalance.js'
import { MemdrainError } from '../../src/core/errors.js'
import { poolPlacement } from '../../src/core/pool/placement.js'
import { MetaPayload, VA, type MetaConnection } from '../../src/core/protocol/index.js'
import { startMemcached, type MemcachedServer } from '../helpers/memcached.js'
import { REPO_ROOT } from '../helpers/cli.js'
import { makeReadOnly, undoReadOnly } from '../helpers/read-only.js'
import { Conns, drainOptions, keysOf, setAll, startPool, type TestPool } from './drain.fixtures.js'
import { readPool, rebalanceOptions } from './rebalance.fixtures.js'

/**
 * The copy hand-off under the faults of issue 12, each with a real application writing and
 * deleting keys: through the source (its static server list) until the switch, through the new
 * owners after it. Afterwards every key at its new owner must hold the application's last
 * acknowledged value, or nothing: 0 stale, 0 deleted keys back.
 */

/**
 * A static-list application: sets and deletes random keys, on the old owner until switchNow(), then on the new one.
 * With `hot`, a share of the operations rewrites the first `hot.count` keys (never deleting them): an
 * application's hot keys, rewritten at the old owner again and again while the copy runs.
 */
class App {
  readonly last = new Map<string, string | null>()
  /** Keys the application deleted at least once. */
  readonly deleted = new Set<string>()
  /** Per key, the writes (null: a delete) the application sent without an answer: they may have landed. */
  readonly unacknowledged = new Map<string, (string | null)[]>()
  /** Acknowledged writes of each hot key before the switch. */
  readonly hotWritesBefore = new Map<string, number>()
  switched = false
  writes = 0
  deletes = 0
  private stopped = false
  private current: Promise<void> = Promise.resolve()
  private loop: Promise<void> | undefined
  private n = 0
  private readonly conns = new Conns()

  constructor(
    readonly keys: Buffer[],
    private readonly before: (key: Buffer) => string,
    private readonly afterSwitch: (key: Buffer) => string,
    private readonly deleteShare = 0.3,
    private readonly hot: { count: number; share: number } = { count: 0, share: 0 },
  ) {
    for (const k of keys) this.last.set(k.toString(), 'v0')
  }

  private pick(): { key: Buffer; hot: boolean } {
    if (this.hot.count > 0 && Math.random() < this.hot.share) return { key: this.keys[Math.floor(Math.random() * this.hot.count)]!, hot: true }
    return { key: this.keys[this.hot.count + Math.floor(Math.random() * (this.keys.length - this.hot.count))]!, hot: false }
  }

  start(opsPerBatch = 5): void {
    this.loop = (async () => {
      while (!this.stopped) {
        const p = this.batch(opsPerBatch)
        this.current = p
        await p.catch(() => undefined)
        await sleep(2)
      }
    })()
  }

  private async batch(n: number): Promise<void> {
    const byServer = new Map<string, { key: Buffer; value: string | null; hot: boolean; before: boolean }[]>()
    const picked = new Set<string>()
    for (let i = 0; i < n; i++) {
      const { key, hot } = this.pick()
      if (picked.has(key.toString())) continue
      picked.add(key.toString())
      const value = !hot && Math.random() < this.deleteShare ? null : `v${++this.n}`
      const to = this.switched ? this.afterSwitch(key) : this.before(key)
      byServer.set(to, [...(byServer.get(to) ?? []), { key, value, hot, before: !this.switched }])
    }
    await Promise.all(
      [...byServer].map(async ([address, ops]) => {
        const c = await this.conns.get(address)
        const p = new MetaPayload()
        for (const op of ops) {
          if (op.value === null) p.command('md', op.key).flags('q').end()
          else p.command('ms', op.key).size(op.value.length).flags('q').end(Buffer.from(op.value))
        }
        try {
          await c.batch(p.noop().take(), () => undefined)
        } catch (err) {
          // Not acknowledged (a stalled server: the request timed out): each write may still land
          // later. The key then holds either what was acknowledged before or one of these.
          for (const op of ops) this.unacknowledged.set(op.key.toString(), [...(this.unacknowledged.get(op.key.toString()) ?? []), op.value])
          throw err
        }
        // Acknowledged: this is what the application expects to read from now on.
        for (const op of ops) {
          this.last.set(op.key.toString(), op.value)
          if (op.value === null) {
            this.deletes++
            this.deleted.add(op.key.toString())
          } else this.writes++
          if (op.hot && op.before) this.hotWritesBefore.set(op.key.toString(), (this.hotWritesBefore.get(op.key.toString()) ?? 0) + 1)
        }
      }),
    )
  }

  /** The applications switch: from now on they use the new owners (after the write in flight landed). */
  async switchNow(): Promise<void> {
    this.switched = true
    await this.current.catch(() => undefined)
  }

  async stop(): Promise<void> {
    this.stopped = true
    await this.loop
    await this.conns.close()
  }

  /** Stale values and deleted keys back at each key's new owner; misses are fine here (`missed` lists them). */
  async check(owner: (key: Buffer) => string): Promise<{ stale: number; resurrected: number; hits: number; missed: Set<string>; samples: string[] }> {
    const out = { stale: 0, resurrected: 0, hits: 0, missed: new Set<string>(), samples: [] as string[] }
    const conns = new Conns()
    try {
      const byOwner = new Map<string, Buffer[]>()
      for (const k of this.keys) byOwner.set(owner(k), [...(byOwner.get(owner(k)) ?? []), k])
      for (const [address, keys] of byOwner) {
        const held = await getValues(await conns.get(address), keys)
        for (const k of keys) {
          const want = this.last.get(k.toString())
          const got = held.get(k.toString())
          // What an unacknowledged write left is the application's own doing, not memdrain's.
          const maybe = this.unacknowledged.get(k.toString()) ?? []
          if (got === undefined) {
            if (want !== null && !maybe.includes(null)) out.missed.add(k.toString())
            continue
          }
          out.hits++
          if (got !== want && maybe.includes(got)) continue
          if (want === null) {
            out.resurrected++
            if (out.samples.length < 5) out.samples.push(`${k}: deleted by the application, back as ${got}`)
          } else if (got !== want) {
            out.stale++
            if (out.samples.length < 5) out.samples.push(`${k}: ${got}, the application last wrote ${want}`)
          }
        }
      }
    } finally {
      await conns.close()
    }
    return out
  }
}

async function getValues(conn: MetaConnection, keys: Buffer[]): Promise<Map<string, string>> {
  const out = new Map<string, string>()
  for (let i = 0; i < keys.length; i += 500) {
    const chunk = keys.slice(i, i + 500)
    const p = new MetaPayload()
    chunk.forEach((k, j) => p.command('mg', k).flags('v q').flag('O', j).end())
    await conn.batch(p.noop().take(), (r) => {
      if (r.status === VA && r.opaque >= 0 && r.opaque < chunk.length) out.set(chunk[r.opaque]!.toString(), r.value!.toString())
    })
  }
  return out
}

/** A job result's figures for an assertion message (why it was not 0), without its long lists. */
function outcomeSummary(r: object): string {
  const { plan: _plan, preflight: _preflight, destinations: _destinations, ...rest } = r as Record<string, unknown>
  return JSON.stringify(rest)
}

function assertClean(r: { stale: number; resurrected: number; samples: string[] }, app: App, what: string): void {
  assert.ok(app.writes > 50 && app.deletes > 20, `${what}: the application wrote (${app.writes}) and deleted (${app.deletes})`)
  assert.equal(r.stale, 0, `${what}: ${r.samples.join('\n')}`)
  assert.equal(r.resurrected, 0, `${what}: ${r.samples.join('\n')}`)
}

interface CliRun {
  code: number | null
  stdout: string
  stderr: string
}

function spawnDrain(args: string[], opts: { killAfterMs?: number; onSpawn?: (pid: number) => void } = {}): Promise<CliRun & { killed: boolean }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(REPO_ROOT, 'bin/run.js'), ...args], { cwd: REPO_ROOT, env: { ...process.env, NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    let killed = false
    opts.onSpawn?.(child.pid!)
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    const killer =
      opts.killAfterMs === undefined
        ? undefined
        : setTimeout(() => {
            killed = child.exitCode === null
            if (killed) process.kill(child.pid!, 'SIGKILL')
          }, opts.killAfterMs)
    const guard = setTimeout(() => child.kill('SIGKILL'), 120_000)
    child.on('error', reject)
    child.on('close', (code) => {
      if (killer !== undefined) clearTimeout(killer)
      clearTimeout(guard)
      resolve({ code, stdout, stderr, killed })
    })
  })
}

/**
 * A switch command the test's application answers: it asks (file `req`), the application
 * switches, and says so (file `ack`); then the command exits 0 — or `sleep`s after asking.
 */
function switchCommand(dir: string, thenSleep = 0): string {
  const req = path.join(dir, 'switch-req')
  const ack = path.join(dir, 'switch-ack')
  return `touch ${req}; while [ ! -f ${ack} ]; do sleep 0.02; done${thenSleep > 0 ? `; sleep ${thenSleep}` : ''}`
}

/** Switches the application when the switch command asks. */
function answerSwitch(dir: string, app: App): { stop: () => void } {
  let stopped = false
  void (async () => {
    while (!stopped) {
      if (existsSync(path.join(dir, 'switch-req')) && !app.switched) {
        await app.switchNow()
        writeFileSync(path.join(dir, 'switch-ack'), '')
      }
      await sleep(10)
    }
  })()
  return { stop: () => (stopped = true) }
}

describe('faults of the copy hand-off with an application writing and deleting: 0 stale, 0 deleted keys back', () => {
  const pools: TestPool[] = []
  const spares: MemcachedServer[] = []
  after(async () => {
    await Promise.all([...pools.map((p) => p.stop()), ...spares.map((s) => s.kill())])
  })

  async function drainSetup(n = 3000): Promise<{ pool: TestPool; src: string; keys: Buffer[]; owner: (k: Buffer) => string; app: App }> {
    const pool = await startPool(3, { hash: 'php-memcached-libketama' })
    pools.push(pool)
    const src = pool.servers[0]!.address
    // The keys the applications keep on the source: those it owns (a static client writes each key to its owner).
    const old = poolPlacement(pool.pool())
    const keys = keysOf('app:', n * 3).filter((k) => old.placement.owner(k) === 0).slice(0, n)
    const conns = new Conns()
    await setAll(await conns.get(src), keys.map((key) => ({ key, value: Buffer.from('v0') })))
    await conns.close()
    const owner = (k: Buffer): string => pool.chainWithout(src, k)[0]!
    const app = new App(keys, () => src, owner)
    return { pool, src, keys, owner, app }
  }

  /**
   * A rebalance of 3 servers (by default 3 → 3: a spare added, the first server removed; or only
   * one of the two), the application writing each key at its owner under the old pool.
   */
  async function rebalanceSetup(
    n = 3000,
    change: 'add' | 'remove' | 'both' = 'both',
    hot?: { count: number; share: number },
  ): Promise<{ pool: TestPool; spare: MemcachedServer; before: (k: Buffer) => string; owner: (k: Buffer) => string; app: App; edits: { add: string[]; remove: string[] } }> {
    const pool = await startPool(3, { hash: 'php-memcached-libketama' })
    pools.push(pool)
    const spare = await startMemcached()
    spares.push(spare)
    const old = poolPlacement(pool.pool())
    const before = (k: Buffer): string => old.servers[old.placement.owner(k)]!.address
    const keys = keysOf('rapp:', n)
    const conns = new Conns()
    const byServer = new Map<string, Buffer[]>()
    for (const k of keys) byServer.set(before(k), [...(byServer.get(before(k)) ?? []), k])
    for (const [address, list] of byServer) await setAll(await conns.get(address), list.map((key) => ({ key, value: Buffer.from('v0') })))
    await conns.close()
    // The new owners: the pool file lists the spare active and the removed server deactivating from the start.
    const owner = (k: Buffer): string => {
      const pp = poolPlacement(readPool(pool.file))
      return pp.servers[pp.placement.owner(k)]!.address
    }
    const edits = { add: change === 'remove' ? [] : [spare.address], remove: change === 'add' ? [] : [pool.servers[0]!.address] }
    return { pool, spare, before, owner, app: new App(keys, before, owner, 0.3, hot), edits }
  }

  /**
   * Either job over its own pool with the application started on it: `run` is the job in this
   * process, `cli` its command line, `destination` a server that only gains keys.
   */
  async function setupJob(
    job: 'drain' | 'rebalance',
    n: number,
  ): Promise<{ app: App; owner: (k: Buffer) => string; pool: TestPool; destination: MemcachedServer; run: (extra: Partial<DrainOptions>) => Promise<{ status: number; samples: unknown }>; cli: string[] }> {
    if (job === 'drain') {
      const d = await drainSetup(n)
      return { ...d, destination: d.pool.servers[1]!, run: (extra) => runDrain(drainOptions(d.pool, d.src, extra)), cli: ['drain', d.src, '--pool', d.pool.file] }
    }
    const r = await rebalanceSetup(n)
    return {
      ...r,
      destination: r.spare,
      run: (extra) => runRebalance(rebalanceOptions(r.pool, r.edits, extra as Partial<RebalanceOptions>)),
      cli: ['rebalance', '--add', r.edits.add[0]!, '--remove', r.edits.remove[0]!, '--pool', r.pool.file],
    }
  }

  // The drain version of this row: drain.copy.test.ts, "leaves no stale value with a writer on the old owner until the switch".
  for (const change of ['add', 'remove'] as const) {
    it(`rebalance (a server ${change === 'add' ? 'added' : 'removed'}): the application keeps rewriting its hot keys at the old owners while the copy runs: 0 stale, 0 deleted keys back, hit ratio of the moved keys it did not delete`, async (t) => {
      const hot = { count: 80, share: 0.7 }
      const { app, before, owner, edits, pool } = await rebalanceSetup(4000, change, hot)
      const hotWrites = (): number => [...app.hotWritesBefore.values()].reduce((a, b) => a + b, 0)
      let atCopyStart: number | undefined
      let atSwitch = 0
      app.start()
      let r: Awaited<ReturnType<typeof runRebalance>>
      try {
        r = await runRebalance(
          rebalanceOptions(pool, edits, {
            handoff: 'copy',
            rate: 800,
            batchSize: 100,
            onEvent: (e) => {
              if (atCopyStart === undefined && e.type === 'progress' && e.tally.moved > 0) atCopyStart = hotWrites()
            },
            waitForSwitch: async () => {
              atSwitch = hotWrites()
              await app.switchNow()
            },
          }),
        )
        await sleep(200)
      } finally {
        await app.stop()
      }
      assert.equal(r.status, 0, JSON.stringify(r.samples))
      assert.equal(r.handoff, 'copy')
      assert.ok(atCopyStart !== undefined, 'the copy reported progress')
      // Several rewrites of each hot key at its old owner between the first copy and the switch.
      assert.ok(atSwitch - atCopyStart >= hot.count * 3, `hot keys rewritten during the copy: ${atSwitch - atCopyStart}`)
      const checked = await app.check(owner)
      assertClean(checked, app, `rebalance --${change}, hot keys`)
      // Hit ratio: every key whose owner changed and that the application never deleted is at its new owner.
      const moved = app.keys.filter((k) => before(k) !== owner(k))
      const kept = moved.filter((k) => !app.deleted.has(k.toString()))
      const hotMoved = kept.filter((k) => app.hotWritesBefore.has(k.toString()))
      assert.ok(hotMoved.length >= 8, `hot keys among the moved ones: ${hotMoved.length}`)
      const missed = kept.filter((k) => checked.missed.has(k.toString())).map(String)
      const ratio = 1 - missed.length / kept.length
      t.diagnostic(`hit ratio on the ${kept.length} moved keys not deleted: ${(100 * ratio).toFixed(2)} % (missed: ${missed.slice(0, 10).join(', ') || 'none'})`)
      // 100 %: a key changed at its old owner before the switch (its refresh may come after it: watch
      // delivery, the refresher's half of --rate) and written by the application at its new owner
      // after the switch is the application's newer write, kept (switch-marks.ts), not deleted.
      assert.deepEqual(missed.slice(0, 10), [], `hit ratio on the ${kept.length} moved keys not deleted: ${(100 * ratio).toFixed(2)} % (missed: ${missed.slice(0, 10).join(', ')})`)
      assert.ok(r.caughtUp > 0, `the rewrites after their copy were caught up (caught up ${r.caughtUp}, followed ${JSON.stringify(r.followed)})`)
    })
  }

  for (const job of ['drain', 'rebalance'] as const) {
    it(`kill -9 of \`memdrain ${job}\` mid-copy, twice, then a rerun: the application deleting meanwhile gets no key back`, async () => {
      const dir = mkdtempSync(path.join(tmpdir(), 'memdrain-kill12-'))
      const { app, owner, cli } = await setupJob(job, job === 'drain' ? 4000 : 6000)
      const args = [...cli, '--yes', '--json', '--rate', '1500', '--threshold', '0.9', '--spool-dir', path.join(dir, 'spool'), '--switch-command', switchCommand(dir)]
      app.start()
      const answer = answerSwitch(dir, app)
      try {
        let kills = 0
        for (const delay of [900, 1500]) {
          const r = await spawnDrain(args, { killAfterMs: delay })
          if (r.killed) kills++
          await sleep(300) // the application keeps writing and deleting while no memdrain runs
        }
        const last = await spawnDrain(args)
        assert.equal(last.code, 0, last.stderr.slice(-2000))
        assert.ok(kills >= 1, 'killed mid-copy at least once')
        await sleep(200)
      } finally {
        answer.stop()
        await app.stop()
        rmSync(dir, { recursive: true, force: true })
      }
      assertClean(await app.check(owner), app, `${job}, kill -9`)
    })
  }

  // A destination that stops answering for 7 s (longer than a request's 5 s timeout) at each
  // step of the hand-off: the job waits for it (downWaitMs) and ends with exit 0, nothing stale.
  for (const [job, when] of [
    ['drain', 'copy'],
    ['rebalance', 'copy'],
    ['drain', 'delta'],
    ['drain', 'catch-up'],
    ['rebalance', 'cleanup'],
  ] as const) {
    const step = {
      copy: 'a destination stalled 7 s (SIGSTOP) mid-copy: its late-applied writes are journaled as possible copies',
      delta: 'a destination stalled 7 s (SIGSTOP) during the delta pass before the switch: the pass waits for it',
      'catch-up': 'a destination stalled 7 s (SIGSTOP) during the catch-up after the switch: the catch-up waits for it',
      cleanup: 'a server that stays stalled 7 s (SIGSTOP) during the clean-up after the switch: the clean-up waits for it',
    }[when]
    it(`${job}: ${step}`, async () => {
      const { app, owner, destination, pool, run } = await setupJob(job, 3000)
      // The clean-up deletes on the servers that stay what they no longer own: the first of them.
      const stalled = when === 'cleanup' ? pool.servers[1]! : destination
      app.start()
      let paused = false
      let resume: NodeJS.Timeout | undefined
      try {
        const r = await run({
          handoff: 'copy',
          rate: 1500,
          batchSize: 100,
          threshold: 0.9,
          downWaitMs: 15_000,
          onEvent: (e) => {
            const now = when === 'copy' ? e.type === 'progress' && e.tally.moved > 600 : e.type === when && e.phase === 'start'
            if (!paused && now) {
              paused = true
              stalled.pause()
              resume = setTimeout(() => stalled.resume(), 7000)
            }
          },
          waitForSwitch: async () => app.switchNow(),
        })
        assert.ok(paused, `the server was stalled (${when})`)
        assert.equal(r.status, 0, outcomeSummary(r))
        await sleep(200)
      } finally {
        clearTimeout(resume)
        stalled.resume()
        await app.stop()
      }
      assertClean(await app.check(owner), app, `${job}, server stalled (${when})`)
    })
  }

  for (const [job, how] of [
    ['drain', 'spool'],
    ['rebalance', 'spool'],
    // (A rebalance whose pool file was reordered is refused: "a rebalance is already in progress … towards another pool".)
    ['drain', 'order'],
  ] as const) {
    const what = how === 'spool' ? 'another --spool-dir (the journal lost)' : "the pool file's servers in another order (the journal's destinations no longer match)"
    it(`${job}: a rerun with ${what} adopts the destinations' possible copies instead of dropping them`, async () => {
      const pool = await startPool(3, { hash: 'php-memcached-libketama' })
      pools.push(pool)
      let keys = keysOf(`lost-${job}:`, 6000)
      const conns = new Conns()
      let owner: (k: Buffer) => string
      let before: (k: Buffer) => string
      let options: (spool: string, extra: object) => Promise<{ status: number }>
      if (job === 'drain') {
        const src = pool.servers[0]!.address
        const old = poolPlacement(pool.pool())
        keys = keys.filter((k) => old.placement.owner(k) === 0)
        await setAll(await conns.get(src), keys.map((key) => ({ key, value: Buffer.from('v0') })))
        before = () => src
        owner = (k) => pool.chainWithout(src, k)[0]!
        options = (spool, extra) => runDrain(drainOptions(pool, src, { handoff: 'copy', spoolDir: spool, threshold: 0.9, ...extra }))
      } else {
        const spare = await startMemcached()
        spares.push(spare)
        const old = poolPlacement(pool.pool())
        before = (k) => old.servers[old.placement.owner(k)]!.address
        keys = keys.slice(0, 3000)
        for (const k of keys) await setAll(await conns.get(before(k)), [{ key: k, value: Buffer.from('v0') }])
        owner = (k) => {
          const pp = poolPlacement(readPool(pool.file))
          return pp.servers[pp.placement.owner(k)]!.address
        }
        options = (spool, extra) => runRebalance(rebalanceOptions(pool, { add: [spare.address], remove: [pool.servers[0]!.address] }, { handoff: 'copy', spoolDir: spool, threshold: 0.9, ...extra }))
      }
      await conns.close()
      const app = new App(keys, before, (k) => owner(k))
      app.start()
      try {
        const ac = new AbortController()
        let aborted = false
        const first = await options(path.join(pool.dir, 'spool-a'), {
          rate: 1000,
          batchSize: 100,
          signal: ac.signal,
          onEvent: (e: { type: string; tally?: { moved: number } }) => {
            if (!aborted && e.type === 'progress' && (e.tally?.moved ?? 0) > 300) {
              aborted = true
              ac.abort()
            }
          },
          waitForSwitch: async () => assert.fail('no switch before the copy is done'),
        })
        assert.equal(first.status, 69)
        await sleep(500) // deletes and writes at the source while nothing runs
        if (how === 'order') {
          // Someone reorders the pool file's servers between the runs (placement unchanged: ketama hashes names).
          const text = JSON.parse(readFileSync(pool.file, 'utf8')) as { servers: unknown[] }
          text.servers = [text.servers[0], ...text.servers.slice(1).reverse()]
          writeFileSync(pool.file, JSON.stringify(text))
        }
        const events: string[] = []
        let adopted = 0
        const second = await options(path.join(pool.dir, how === 'spool' ? 'spool-b' : 'spool-a'), {
          onEvent: (e: { type: string; message?: string; adopted?: number }) => {
            if (e.type !== 'journal-lost') return
            events.push(e.message ?? '')
            adopted += e.adopted ?? 0
          },
          waitForSwitch: async () => app.switchNow(),
        })
        assert.equal(second.status, 0, JSON.stringify(second).slice(0, 2000))
        assert.equal(events.length >= 1, true, 'the lost journal is reported, not dropped silently')
        assert.match(events[0]!, how === 'spool' ? /no copy journal/ : /written for other destinations/)
        assert.ok(adopted > 100, `the first run's copies are found on the destinations (${adopted})`)
        await sleep(200)
      } finally {
        await app.stop()
      }
      assertClean(await app.check(owner), app, `${job}, ${what}`)
    })
  }

  for (const job of ['drain', 'rebalance'] as const) {
    it(`${job}: the spool disk fills up mid-copy (ENOSPC on a 256 KiB tmpfs): exit 3 before the switch; after room is made the rerun finishes clean`, async (t) => {
      if (process.getuid?.() !== 0) return t.skip('mounting a tmpfs needs root')
      // A rebalance copies only the keys whose owner changes (about a third here): more keys to fill the disk.
      const { owner, app, run } = await setupJob(job, job === 'drain' ? 6000 : 18000)
      const mnt = mkdtempSync(path.join(tmpdir(), 'memdrain-enospc12-'))
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k,mode=0700', 'tmpfs', mnt])
      app.start()
      let switches = 0
      try {
        const options: Partial<DrainOptions> = { handoff: 'copy', spoolDir: mnt, threshold: 0.9, rate: 3000, batchSize: 200, waitForSwitch: async () => void switches++ }
        await assert.rejects(run(options), (err: MemdrainError) => {
          assert.equal(err.exitCode, 3, err.message)
          assert.match(err.message, /disk is full|ENOSPC/)
          return true
        })
        assert.equal(switches, 0, 'nothing switched')
        execFileSync('mount', ['-o', 'remount,size=16m', mnt])
        const r = await run({ ...options, waitForSwitch: async () => app.switchNow() })
        assert.equal(r.status, 0, JSON.stringify(r.samples))
        await sleep(200)
      } finally {
        await app.stop()
        execFileSync('umount', [mnt])
        rmSync(mnt, { recursive: true, force: true })
      }
      assertClean(await app.check(owner), app, `${job}, ENOSPC`)
    })
  }

  for (const [job, how] of [
    ['drain', 'edited'],
    ['rebalance', 'edited'],
    ['drain', 'read-only'],
    ['rebalance', 'read-only'],
  ] as const) {
    it(`${job}: the pool file is ${how === 'edited' ? 'edited' : 'made read-only (for root too: a read-only bind mount)'} while the switch command runs: the catch-up runs anyway, the missing record is said (RECORD_UNSAVED)`, async (t) => {
      const { app, owner, pool, run } = await setupJob(job, 3000)
      let readOnly: string | undefined
      app.start()
      let caughtUp = false
      try {
        await assert.rejects(
          run({
            handoff: 'copy',
            threshold: 0.9,
            onEvent: (e) => {
              if (e.type === 'catch-up' && e.phase === 'done') caughtUp = true
            },
            waitForSwitch: async () => {
              await app.switchNow()
              if (how === 'edited') appendFileSync(pool.file, '\n') // someone edits the pool file meanwhile
              else {
                try {
                  readOnly = makeReadOnly(pool.file)
                } catch (err) {
                  throw new Error(`SKIP: neither a read-only bind mount nor chattr +i works here (${(err as Error).message})`)
                }
              }
            },
          }),
          (err: MemdrainError) => {
            if (err.message.startsWith('SKIP: ')) return true
            assert.equal(err.code, 'RECORD_UNSAVED', err.message)
            assert.match(err.message, /switched and caught up/)
            // The save really failed for the reason the test made: not some other error.
            assert.match(err.message, how === 'edited' ? /changed by someone else/ : /EBUSY|EROFS|EPERM|read-only/)
            return true
          },
        )
        if (how === 'read-only' && readOnly === undefined) return t.skip('no way to make a file read-only for root on this machine (mount --bind, chattr +i)')
        assert.ok(caughtUp, 'the catch-up ran to its end in the same process')
        await sleep(200)
      } finally {
        if (readOnly !== undefined) undoReadOnly(pool.file)
        await app.stop()
      }
      assertClean(await app.check(owner), app, `${job}, pool file ${how} during the switch`)
    })
  }

  for (const job of ['drain', 'rebalance'] as const) {
    it(`${job}: SIGINT during the switch command: the command gets SIGTERM, the copies are caught up, exit 69 at once`, async () => {
      const { app, owner, cli } = await setupJob(job, 3000)
      const dir = mkdtempSync(path.join(tmpdir(), 'memdrain-sigint12-'))
      mkdirSync(dir, { recursive: true })
      app.start()
      const answer = answerSwitch(dir, app)
      try {
        let pid = 0
        const run = spawnDrain([...cli, '--yes', '--json', '--threshold', '0.9', '--spool-dir', path.join(dir, 'spool'), '--switch-command', switchCommand(dir, 60)], {
          onSpawn: (p) => (pid = p),
        })
        while (!existsSync(path.join(dir, 'switch-ack'))) await sleep(20)
        await sleep(300)
        const t0 = Date.now()
        process.kill(pid, 'SIGINT')
        const r = await run
        assert.equal(r.code, 69, r.stderr.slice(-2000))
        assert.ok(Date.now() - t0 < 15_000, `exited ${Date.now() - t0} ms after SIGINT, not after the command's 60 s`)
        assert.match(r.stdout + r.stderr, /interrupted during the switch command/)
        await sleep(200)
      } finally {
        answer.stop()
        await app.stop()
        rmSync(dir, { recursive: true, force: true })
      }
      assertClean(await app.check(owner), app, `${job}, SIGINT during the switch command`)
    })
  }

  it('--handoff move on a pool whose clients are static is refused (exit 2) unless --force: drain and rebalance', async () => {
    const pool = await startPool(2)
    pools.push(pool)
    const spare = await startMemcached()
    spares.push(spare)
    const refused = (err: MemdrainError): boolean => {
      assert.equal(err.code, 'MOVE_ON_STATIC')
      assert.equal(err.exitCode, 2)
      return true
    }
    await assert.rejects(runDrain(drainOptions(pool, pool.servers[0]!.address, { handoff: 'move', force: false })), refused)
    await assert.rejects(runRebalance(rebalanceOptions(pool, { add: [spare.address] }, { handoff: 'move', force: false })), refused)
    assert.equal(pool.server(pool.servers[0]!.address).state, 'active', 'nothing marked')
    assert.equal(readPool(pool.file).servers.length, 2, 'nothing added')
  })
})
