/**
 * memdrain in a real terminal (tmux): Ctrl-C at the drain's confirmation and at the copy
 * hand-off's "press Enter" prompt exits 69 without a stack trace and leaves the drain resumable;
 * help wraps within 80 columns; NO_COLOR=1 writes no color codes to the terminal.
 */
import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { REPO_ROOT, runCli } from '../helpers/cli.js'
import { Terminal, tmuxMissing } from '../helpers/tmux.js'
import { connect, keysOf, setAll, startPool, type TestPool } from '../integration/drain.fixtures.js'

const skip = tmuxMissing()
if (skip !== undefined) console.log(`# skipping the terminal tests: ${skip}`)
const work = mkdtempSync(path.join(tmpdir(), 'memdrain-tty-'))
const terminals: Terminal[] = []
const pools: TestPool[] = []
after(async () => {
  for (const t of terminals) t.stop()
  await Promise.all(pools.map((p) => p.stop()))
  rmSync(work, { recursive: true, force: true })
})

function terminal(args: string[], opts: ConstructorParameters<typeof Terminal>[1] = {}): Terminal {
  const t = new Terminal([process.execPath, path.join(REPO_ROOT, 'bin/run.js'), ...args], { cwd: REPO_ROOT, ...opts })
  terminals.push(t)
  return t.start()
}

function assertNoStackTrace(screen: string): void {
  assert.doesNotMatch(screen, /This is a bug|^\s+at .+:\d+:\d+\)?$/m, screen)
}

describe('memdrain on a terminal', { skip }, () => {
  it('Ctrl-C at the drain confirmation: exit 69, nothing changed, no stack trace', async () => {
    const pool = path.join(work, 'confirm.json')
    const doc = JSON.stringify({ hash: 'memjs', servers: [{ address: '127.0.0.1:1' }, { address: '127.0.0.1:2' }] })
    writeFileSync(pool, doc)
    const t = terminal(['drain', '127.0.0.1:1', '--pool', pool])
    await t.waitFor(/then flush it\? \[y\/N\]/)
    t.keys('C-c')
    const { code, screen } = await t.exit()
    assert.equal(code, 69, screen)
    assert.match(screen, /interrupted at the prompt; nothing was changed/)
    assertNoStackTrace(screen)
    assert.equal(readFileSync(pool, 'utf8'), doc, 'the pool file is untouched')
  })

  it('Ctrl-C at "press Enter to catch up": exit 69, no stack trace; the same drain then resumes and finishes', async () => {
    const p = await startPool(2)
    pools.push(p)
    const src = p.servers[0]!.address
    const c = await connect(src)
    await setAll(c, keysOf('tty', 300).map((key) => ({ key, value: Buffer.from('value') })))
    await c.close()
    const spool = path.join(p.dir, 'spool')
    const t = terminal(['drain', src, '--pool', p.file, '--yes', '--handoff', 'copy', '--rate', '0', '--spool-dir', spool], { cols: 160, rows: 40 })
    await t.waitFor(/press Enter to catch up and purge/, 30_000)
    t.keys('C-c')
    const { code, screen } = await t.exit()
    assert.equal(code, 69, screen)
    assert.match(screen, /interrupted at the prompt/)
    assertNoStackTrace(screen)
    assert.equal(p.server(src).state, 'deactivating', 'the drain record stays')
    const resumed = await runCli(['drain', src, '--pool', p.file, '--yes', '--json', '--handoff', 'copy', '--switch-command', 'true', '--spool-dir', spool])
    assert.equal(resumed.code, 0, resumed.stderr)
    assert.equal(resumed.json.result.resumed, true)
    assert.equal(resumed.json.result.state, 'removed')
    assert.equal(resumed.json.result.moved, 300)
  })

  it('help wraps within an 80-column terminal', async () => {
    for (const args of [['help'], ['help', 'drain'], ['rebalance', '--help']]) {
      const t = terminal(args, { cols: 80, rows: 200 })
      const { code, screen } = await t.exit()
      assert.equal(code, 0, screen)
      // capture-pane -J joins the lines the terminal wrapped: none may be longer than 80.
      const long = screen.split('\n').filter((l) => [...l].length > 80)
      assert.deepEqual(long, [], `memdrain ${args.join(' ')}`)
      t.stop()
    }
  })

  it('NO_COLOR=1: no color codes on the terminal (and colors without it)', async () => {
    const pool = path.join(work, 'colors.json')
    writeFileSync(pool, JSON.stringify({ hash: 'memjs', servers: [{ address: '127.0.0.1:1' }, { address: '127.0.0.1:2', state: 'deactivating' }] }))
    const run = async (env: Record<string, string>, name: string): Promise<string> => {
      const raw = path.join(work, name)
      writeFileSync(raw, '')
      // A pause first, so that the raw capture is attached before memdrain writes.
      const t = new Terminal(['sh', '-c', `sleep 0.5; exec "$0" "$@"`, process.execPath, path.join(REPO_ROOT, 'bin/run.js'), 'pool', 'show', '--pool', pool], { cwd: REPO_ROOT, env, rawOutput: raw })
      terminals.push(t)
      t.start()
      const { code, screen } = await t.exit()
      assert.equal(code, 0, screen)
      await sleep(200)
      t.stop()
      return readFileSync(raw, 'utf8')
    }
    // eslint-disable-next-line no-control-regex
    const SGR = /\u001b\[[0-9;]*m/
    assert.match(await run({}, 'colored.out'), SGR, 'on a terminal the pool table is colored')
    const plain = await run({ NO_COLOR: '1' }, 'plain.out')
    assert.match(plain, /deactivating/)
    assert.doesNotMatch(plain, SGR)
  })
})
