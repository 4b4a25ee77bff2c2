import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { reflow } from '../../src/cli/help.js'
import { shellQuote } from '../../src/cli/invocation.js'
import { TokenBucket } from '../../src/core/engine/throttle.js'
import { PoolClient } from '../../src/index.js'
import { validatePool } from '../../src/core/pool/validate.js'
import { renderAccount } from '../../src/ui/drain-summary.js'
import { REPO_ROOT } from '../helpers/cli.js'

test('help: prose paragraphs are joined for the terminal to wrap; lists and titled blocks keep their lines', () => {
  const text = 'First line of a\nparagraph here.\n\nEXIT CODES\n  0   done\n  1   failed\n\n  indented\n  list'
  assert.equal(reflow(text), 'First line of a paragraph here.\n\nEXIT CODES\n  0   done\n  1   failed\n\n  indented\n  list')
})

test('the summary of a job adds up: moved + in place + by clients + gone + skipped + not moved = keys at start', () => {
  const line = renderAccount({ keysAtStart: 1000, moved: 900, inPlace: 40, movedByClients: 20, skipped: { gone: 30, expiring: 5, 'too-large': 1 }, failed: 3 })
  const [lhs, rhs] = line.split(' = ') as [string, string]
  const total = Number(/^([\d,]+) keys at start/.exec(lhs)![1]!.replaceAll(',', ''))
  const parts = rhs.split(' + ').map((p) => Number(/^([\d,]+)/.exec(p)![1]!.replaceAll(',', '')))
  assert.equal(total, 1000)
  assert.equal(parts.reduce((a, b) => a + b, 0), total, line)
  assert.match(line, /20 moved by clients/)
  assert.match(line, /10 gone/, 'gone counts what left on its own, not what clients moved')
  assert.match(line, /4 not moved \(3 failed this run\)/)
  // Keys written to the source during the drain and moved too: said, not hidden in a wrong total.
  assert.match(renderAccount({ keysAtStart: 10, moved: 12, inPlace: 0, skipped: {}, failed: 0 }), /^10 keys at start \+ 2 written since = 12 moved/)
})

test('throttle: many takers on one AbortSignal add no listener each (no MaxListenersExceededWarning)', async () => {
  const warnings: Error[] = []
  const onWarning = (w: Error): void => {
    warnings.push(w)
  }
  process.on('warning', onWarning)
  try {
    const bucket = new TokenBucket(1000)
    const ac = new AbortController()
    // 3 sources × 4 batches in flight × 2 buckets (keys, bytes) and more: all waiting at once.
    const started = performance.now()
    await Promise.all(Array.from({ length: 40 }, () => bucket.take(50, ac.signal)))
    const seconds = (performance.now() - started) / 1000
    assert.ok(seconds >= 0.9, `40 × 50 tokens at 1000/s (1000 of burst) took ${seconds.toFixed(2)} s`)
    await new Promise((r) => setImmediate(r))
  } finally {
    process.off('warning', onWarning)
  }
  assert.deepEqual(warnings.map((w) => w.name), [])
})

test('throttle: an abort releases every queued taker at once', async () => {
  const bucket = new TokenBucket(10)
  const ac = new AbortController()
  const all = Promise.all(Array.from({ length: 20 }, () => bucket.take(10, ac.signal)))
  setTimeout(() => ac.abort(), 50)
  const started = performance.now()
  await all
  assert.ok(performance.now() - started < 1000)
})

test('new PoolClient(plain pool object) validates it and fills the defaults; a bad one names the field', async () => {
  const client = new PoolClient({ hash: 'memjs', servers: [{ address: '127.0.0.1:1' }, { address: '127.0.0.1:2' }] }, { watch: false, report: false })
  try {
    assert.equal(client.pool.servers.length, 2)
    assert.equal(client.pool.servers[0]!.state, 'active')
    assert.equal(client.locate('a').chain.length, 1)
  } finally {
    await client.close()
  }
  assert.throws(() => new PoolClient({ hash: 'no-such-hash', servers: [{ address: '127.0.0.1:1' }] }), /new PoolClient\(pool\): hash: unknown hash/)
})

test('shellQuote: arguments come back as the shell reads them', () => {
  assert.equal(shellQuote('user:1'), 'user:1')
  assert.equal(shellQuote('my pool.json'), "'my pool.json'")
  assert.equal(shellQuote("it's"), `'it'\\''s'`)
})

test("README: every client's pool file example is a valid pool", () => {
  const readme = readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8')
  const section = readme.slice(readme.indexOf('### The pool file for your client'), readme.indexOf('## Commands'))
  const docs = [...section.matchAll(/```json\n(.*?)\n```/gs)].map((m) => m[1]!)
  assert.ok(docs.length >= 5, `found ${docs.length} examples`)
  for (const d of docs) validatePool(JSON.parse(d), 'README')
})
