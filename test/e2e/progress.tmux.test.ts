/**
 * The progress display on a real terminal: the built CLI runs in tmux panes of 160×40 and
 * 80×30, and the screen is read with `tmux capture-pane` while the job runs and after it ends.
 * Bars fit the width, totals per destination come from the plan, counts carry thousands
 * separators, nothing of the bars stays on screen after the end or after Ctrl-C, and the copy
 * hand-off's "press Enter" is not covered by bars.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync, spawnSync } from 'node:child_process'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { REPO_ROOT } from '../helpers/cli.js'
import { connect, keysOf, setAll, startPool, type TestPool } from '../integration/drain.fixtures.js'
import { startMemcached, type MemcachedServer } from '../helpers/memcached.js'

const hasTmux = spawnSync('tmux', ['-V']).status === 0
const SOCKET = `memdrain-test-${process.pid}`
const BIN = path.join(REPO_ROOT, 'bin/run.js')

function tmux(...args: string[]): string {
  return execFileSync('tmux', ['-L', SOCKET, ...args], { encoding: 'utf8' })
}

/** Starts `command` in a new detached pane of the given size; the pane stays after the command ends (its exit status printed). */
function startPane(name: string, width: number, height: number, command: string): void {
  tmux('new-session', '-d', '-s', name, '-x', String(width), '-y', String(height), `${command}; echo "EXIT=$?"; sleep 600`)
}

function screen(name: string): string[] {
  return tmux('capture-pane', '-p', '-t', name).split('\n')
}

async function waitForScreen(name: string, what: string, test: (lines: string[]) => boolean, timeoutMs = 30_000): Promise<string[]> {
  const until = Date.now() + timeoutMs
  for (;;) {
    const lines = screen(name)
    if (test(lines)) return lines
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}; screen:\n${lines.join('\n')}`)
    await sleep(100)
  }
}

const BAR = /[█░]/
/** The status line above the bars: `drain ADDR · phase · figures`. */
const STATUS = / · (moving keys|listing keys|catching up|connecting|checking room|waiting)/
/** Lines the bars leave behind, if any. */
const remnants = (lines: string[]): string[] => lines.filter((l) => BAR.test(l) || STATUS.test(l))
const count = (s: string): number => Number(s.replace(/,/g, ''))

async function loadedPool(keys: number): Promise<TestPool> {
  const pool = await startPool(3, { clients: 'pool-aware' }) // the move hand-off is for pool-aware clients
  const c = await connect(pool.servers[0]!.address)
  const all = keysOf('tmux', keys)
  const value = Buffer.alloc(50, 'v')
  for (let i = 0; i < all.length; i += 5000) await setAll(c, all.slice(i, i + 5000).map((key) => ({ key, value })))
  await c.close()
  return pool
}

function drainCommand(pool: TestPool, extra: string): string {
  const src = pool.servers[0]!.address
  return `cd ${pool.dir} && ${process.execPath} ${BIN} drain ${src} --pool ${pool.file} --spool-dir ${path.join(pool.dir, 'spool')} ${extra}`
}

describe('progress on a terminal (tmux)', { skip: hasTmux ? false : 'tmux is not installed (scripts/setup.sh installs it)' }, () => {
  const pools: TestPool[] = []
  const spares: MemcachedServer[] = []
  before(() => {
    // A server of our own, on our own socket: the sessions below are ours alone.
    tmux('-f', '/dev/null', 'start-server', ';', 'set-option', '-g', 'exit-empty', 'off')
  })
  after(async () => {
    spawnSync('tmux', ['-L', SOCKET, 'kill-server'])
    await Promise.all([...pools.map((p) => p.stop()), ...spares.map((s) => s.stop())])
  })

  for (const [width, height] of [
    [160, 40],
    [80, 30],
  ] as const) {
    it(`${width}×${height}: bars fit, per-destination totals from the plan, ETA, nothing left after the end`, async () => {
      const pool = await loadedPool(40_000)
      pools.push(pool)
      const name = `run${width}`
      startPane(name, width, height, drainCommand(pool, '--yes --handoff move --client-grace 0 --rate 8000'))
      const during = await waitForScreen(name, 'the bars', (l) => l.some((x) => /^ {2}all .*\[[█░]+\].*\/40,000/.test(x) && /ETA \d/.test(x)))
      for (const l of during) assert.ok([...l.trimEnd()].length <= width - 1, `a line of ${[...l.trimEnd()].length} columns at ${width}: ${l}`)
      const status = during.find((l) => l.startsWith(`drain ${pool.servers[0]!.address} · `))
      assert.ok(status !== undefined, during.join('\n'))
      assert.match(status, /moving keys · moved [\d,]+ · in place [\d,]+/)
      const overall = /\[[█░]+\] +\d+% +([\d,]+)\/([\d,]+)/.exec(during.find((l) => l.startsWith('  all '))!)!
      assert.equal(count(overall[2]!), 40_000)
      const dests = during.filter((l) => l.startsWith('  → ')).map((l) => /→ (\S+) +\[[█░]+\] +\d+% +([\d,]+)\/([\d,]+)/.exec(l)!)
      assert.equal(dests.length, 2, during.join('\n'))
      // Each destination's total is its share of the plan, and the shares add up to the whole.
      for (const d of dests) assert.ok(count(d[3]!) > 0 && count(d[3]!) < 40_000, d[0])
      assert.equal(dests.reduce((n, d) => n + count(d[3]!), 0), 40_000)
      // The bars line up.
      assert.equal(new Set(during.filter((l) => BAR.test(l)).map((l) => l.indexOf('['))).size, 1, during.join('\n'))

      const end = await waitForScreen(name, 'the end', (l) => l.some((x) => x.startsWith('EXIT=')), 60_000)
      assert.ok(end.includes('EXIT=0'), end.join('\n'))
      assert.deepEqual(remnants(end), [], `bar remnants after the end:\n${end.join('\n')}`)
      assert.ok(end.some((l) => /transitioned 100\.0%/.test(l)), end.join('\n'))
      assert.ok(end.some((l) => /40,000 keys at start = 40,000 moved/.test(l)), end.join('\n'))
    })
  }

  it('Ctrl-C: the notice above the bars, exit 69, no bar left on screen', async () => {
    const pool = await loadedPool(40_000)
    pools.push(pool)
    startPane('ctrlc', 80, 30, drainCommand(pool, '--yes --handoff move --client-grace 0 --rate 4000'))
    await waitForScreen('ctrlc', 'the bars', (l) => l.some((x) => /^ {2}all .*\[[█░]+\]/.test(x)))
    tmux('send-keys', '-t', 'ctrlc', 'C-c')
    const end = await waitForScreen('ctrlc', 'the end', (l) => l.some((x) => x.startsWith('EXIT=')))
    assert.ok(end.includes('EXIT=69'), end.join('\n'))
    assert.ok(end.some((l) => l.startsWith('SIGINT: finishing the batches in flight')), end.join('\n'))
    assert.deepEqual(remnants(end), [], `bar remnants after Ctrl-C:\n${end.join('\n')}`)
  })

  it('copy hand-off: the "press Enter" prompt is not covered by bars; Enter starts a visible catch-up', async () => {
    const pool = await loadedPool(20_000)
    pools.push(pool)
    startPane('prompt', 80, 30, drainCommand(pool, '--yes --handoff copy --rate 10000'))
    const waiting = await waitForScreen('prompt', 'the prompt', (l) => l.some((x) => x.includes('press Enter')))
    // The prompt stays the last thing on screen: no bar is redrawn over or under it.
    await sleep(1500)
    const still = screen('prompt')
    assert.deepEqual(still, waiting, 'the screen changed while waiting for Enter')
    assert.deepEqual(remnants(still), [], still.join('\n'))
    const last = still.filter((l) => l.trim() !== '').pop()!
    assert.match(last, /press Enter/)
    tmux('send-keys', '-t', 'prompt', 'Enter')
    const end = await waitForScreen('prompt', 'the end', (l) => l.some((x) => x.startsWith('EXIT=')))
    assert.ok(end.includes('EXIT=0'), end.join('\n'))
    assert.ok(end.some((l) => /^catch-up: checking 20,000 copies/.test(l)), end.join('\n'))
    assert.ok(end.some((l) => /^catch-up done: 20,000\/20,000 checked/.test(l)), end.join('\n'))
    assert.deepEqual(remnants(end), [], end.join('\n'))
  })

  it('rebalance, copy hand-off: the sources\' bars, then the prompt alone on screen, then the catch-up; nothing left', async () => {
    const pool = await loadedPool(20_000)
    pools.push(pool)
    const spare = await startMemcached()
    spares.push(spare)
    startPane('rebal', 80, 30, `cd ${pool.dir} && ${process.execPath} ${BIN} rebalance --add ${spare.address} --pool ${pool.file} --spool-dir ${path.join(pool.dir, 'spool')} --yes --handoff copy --rate 10000`)
    const during = await waitForScreen('rebal', 'the bars', (l) => l.some((x) => /^ {2}all .*\[[█░]+\]/.test(x)))
    for (const l of during) assert.ok([...l.trimEnd()].length <= 79, l)
    assert.ok(during.some((l) => l.startsWith(`  → ${spare.address} `)), during.join('\n'))
    const waiting = await waitForScreen('rebal', 'the prompt', (l) => l.some((x) => x.includes('press Enter')))
    await sleep(1500)
    assert.deepEqual(screen('rebal'), waiting, 'the screen changed while waiting for Enter')
    assert.deepEqual(remnants(waiting), [], waiting.join('\n'))
    tmux('send-keys', '-t', 'rebal', 'Enter')
    const end = await waitForScreen('rebal', 'the end', (l) => l.some((x) => x.startsWith('EXIT=')))
    assert.ok(end.includes('EXIT=0'), end.join('\n'))
    assert.ok(end.some((l) => /^catch-up done: [\d,]+\/[\d,]+ checked/.test(l)), end.join('\n'))
    assert.deepEqual(remnants(end), [], end.join('\n'))
  })
})
