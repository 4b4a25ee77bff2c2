/**
 * The CLI's surroundings through the built binary: help (root, command, topic, -h), version (-v),
 * unknown commands (did-you-mean; one JSON error under --json), the commands and autocomplete
 * plugins, help that fits 80 columns off a terminal, the environment variables in the root help,
 * no color codes with NO_COLOR or --no-color.
 */
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { Config, loadHelpClass } from '@oclif/core'
import { runCli, REPO_ROOT } from '../helpers/cli.js'

const work = mkdtempSync(path.join(tmpdir(), 'memdrain-ux-'))
after(() => rmSync(work, { recursive: true, force: true }))
// eslint-disable-next-line no-control-regex
const ESCAPE = /\u001b\[/

test('help, help drain, drain -h, help pool: exit 0 with the expected sections', async () => {
  const root = await runCli(['help'])
  assert.equal(root.code, 0, root.stderr)
  for (const section of ['USAGE', 'TOPICS', 'COMMANDS', 'ENVIRONMENT', 'EXIT CODES']) assert.match(root.stdout, new RegExp(`^${section}$`, 'm'))
  assert.match(root.stdout, /^ {2}drain +Move every live key/m)
  const drain = await runCli(['help', 'drain'])
  assert.equal(drain.code, 0, drain.stderr)
  assert.match(drain.stdout, /\$ memdrain drain SERVER/)
  const short = await runCli(['drain', '-h'])
  assert.equal(short.code, 0, short.stderr)
  assert.equal(short.stdout, drain.stdout)
  const topic = await runCli(['help', 'pool'])
  assert.equal(topic.code, 0, topic.stderr)
  assert.match(topic.stdout, /^ {2}pool show +/m)
  assert.match(topic.stdout, /^The pool itself/)
})

test('version and -v print the version', async () => {
  const { version } = JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }
  for (const args of [['version'], ['-v'], ['--version']]) {
    const r = await runCli(args)
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`)
    assert.match(r.stdout, new RegExp(`memdrain/${version.replaceAll('.', '\\.')}`), args.join(' '))
  }
})

test('an unknown command: "did you mean" and exit 2; under --json one JSON error document on stdout', async () => {
  const r = await runCli(['drian', 'x'])
  assert.equal(r.code, 2)
  assert.match(r.stderr, /"drian" is not a memdrain command\. Did you mean "drain"\?/)
  assert.equal(r.stdout, '')
  const j = await runCli(['pool', 'shwo', '--json'])
  assert.equal(j.code, 2)
  assert.deepEqual(j.json, {
    status: 2,
    error: { code: 'COMMAND_NOT_FOUND', message: '"pool shwo" is not a memdrain command. Did you mean "pool show"?', suggestions: ['memdrain pool show', 'memdrain help: the list of commands'] },
    warnings: [],
  })
})

test('commands lists every command; autocomplete prints the setup for a shell', async () => {
  const list = await runCli(['commands', '--json'])
  assert.equal(list.code, 0, list.stderr)
  const ids = (list.json as { id: string }[]).map((c) => c.id)
  const files = readdirSync(path.join(REPO_ROOT, 'src/commands'), { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts'))
  for (const f of files) assert.ok(ids.includes(f.replace(/\.ts$/, '').replaceAll(path.sep, ':')), `${f} in \`memdrain commands\``)
  const complete = await runCli(['autocomplete', 'bash'], { env: { HOME: work, XDG_CACHE_HOME: path.join(work, 'cache') } })
  assert.equal(complete.code, 0, complete.stderr)
  assert.match(complete.stdout, /memdrain autocomplete script bash/)
})

test('help fits 80 columns off a terminal: the root, every topic and every command', async () => {
  // In-process, through the CLI's own help class and config (one process instead of ~20).
  const config = await Config.load(REPO_ROOT)
  const HelpClass = await loadHelpClass(config)
  const subjects = [[], ...config.topics.map((t) => [t.name]), ...config.commands.filter((c) => c.hidden !== true).map((c) => c.id.split(':'))]
  assert.ok(subjects.length > 15, `${subjects.length} help pages`)
  for (const argv of subjects) {
    let out = ''
    const write = process.stdout.write.bind(process.stdout)
    process.stdout.write = ((chunk: string | Uint8Array): boolean => {
      out += String(chunk)
      return true
    }) as typeof process.stdout.write
    try {
      await new HelpClass(config, { maxWidth: 80, stripAnsi: true }).showHelp(argv)
    } finally {
      process.stdout.write = write
    }
    assert.ok(out.length > 100, `memdrain help ${argv.join(' ')}: ${out}`)
    const long = out.split('\n').filter((l) => [...l].length > 80)
    assert.deepEqual(long, [], `memdrain help ${argv.join(' ')}`)
  }
})

test('the root help lists every MEMDRAIN_* variable memdrain reads', async () => {
  const read = new Set<string>()
  for (const f of readdirSync(path.join(REPO_ROOT, 'src'), { recursive: true, encoding: 'utf8' })) {
    if (!f.endsWith('.ts')) continue
    const text = readFileSync(path.join(REPO_ROOT, 'src', f), 'utf8')
    for (const m of text.matchAll(/env\.(MEMDRAIN_[A-Z_]+)|file\('(MEMDRAIN_[A-Z_]+)'\)/g)) read.add((m[1] ?? m[2])!)
  }
  assert.ok(read.size >= 10, [...read].join(' '))
  const root = await runCli(['help'])
  const environment = root.stdout.slice(root.stdout.indexOf('ENVIRONMENT'), root.stdout.indexOf('EXIT CODES'))
  for (const v of read) assert.match(environment, new RegExp(`^ {2}${v}\\b`, 'm'), `${v} in the root help`)
})

test('NO_COLOR=1 and --no-color: no escape codes, even when colors are forced', async () => {
  const pool = path.join(work, 'pool.json')
  writeFileSync(pool, JSON.stringify({ hash: 'memjs', servers: [{ address: '127.0.0.1:1' }, { address: '127.0.0.1:2', state: 'deactivating' }] }))
  const forced = { FORCE_COLOR: '3', NO_COLOR: '' }
  const colored = await runCli(['pool', 'show', '--pool', pool], { env: forced })
  assert.equal(colored.code, 0, colored.stderr)
  assert.match(colored.stdout, ESCAPE, 'with FORCE_COLOR the table is colored (so the checks below can fail)')
  const noColor = await runCli(['pool', 'show', '--pool', pool], { env: { ...forced, NO_COLOR: '1' } })
  assert.equal(noColor.code, 0, noColor.stderr)
  assert.doesNotMatch(noColor.stdout + noColor.stderr, ESCAPE)
  const flag = await runCli(['pool', 'show', '--pool', pool, '--no-color'], { env: forced })
  assert.equal(flag.code, 0, flag.stderr)
  assert.doesNotMatch(flag.stdout + flag.stderr, ESCAPE)
  assert.equal(flag.stdout, noColor.stdout)
  const error = await runCli(['drain', '127.0.0.1:9', '--pool', pool, '--yes', '--no-color'], { env: forced })
  assert.notEqual(error.code, 0)
  assert.doesNotMatch(error.stderr, ESCAPE)
})
