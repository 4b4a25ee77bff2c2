import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { estimateMovedFraction, placesLike, targetPool } from '../../src/core/pool/rebalance-target.js'
import { parsePoolText, validatePool } from '../../src/core/pool/validate.js'
import { poolToDocument } from '../../src/core/pool/model.js'
import { MemdrainError } from '../../src/core/errors.js'

const base = validatePool({ hash: 'php-memcached-libketama', servers: ['10.0.0.1:11211', '10.0.0.2:11211', '10.0.0.3:11211'] }, 'test')
const none = { add: [], remove: [], weight: [] }

function throwsCode(fn: () => unknown, code: string, exitCode: number): void {
  assert.throws(fn, (err: unknown) => err instanceof MemdrainError && err.code === code && err.exitCode === exitCode)
}

describe('rebalance target pool', () => {
  it('applies --add (with weight), --remove and --weight', () => {
    const next = targetPool(base, { ...none, add: ['10.0.0.4:11211=3'], remove: ['10.0.0.2:11211'], weight: ['10.0.0.1:11211=2'] }, 'test')
    assert.deepEqual(
      next.servers.map((s) => [s.address, s.state, s.weight]),
      [
        ['10.0.0.1:11211', 'active', 2],
        ['10.0.0.2:11211', 'deactivating', 1],
        ['10.0.0.3:11211', 'active', 1],
        ['10.0.0.4:11211', 'active', 3],
      ],
    )
    assert.equal(placesLike(base, next), false)
    assert.equal(placesLike(base, targetPool(base, { ...none, weight: ['10.0.0.1:11211=1'] }, 'test')), true)
  })

  it('--to keeps the servers that leave as deactivating', () => {
    const to = validatePool({ hash: 'memjs', servers: ['10.0.0.3:11211', '10.0.0.5:11211'] }, 'new.json')
    const next = targetPool(base, { ...none, to: { pool: to, location: 'new.json' } }, 'test')
    assert.equal(next.hash, 'memjs')
    assert.deepEqual(next.servers.map((s) => `${s.address}:${s.state}`), ['10.0.0.3:11211:active', '10.0.0.5:11211:active', '10.0.0.1:11211:deactivating', '10.0.0.2:11211:deactivating'])
  })

  it('refuses unknown, duplicate and mixed edits with exit 2, and an invalid result with exit 3', () => {
    throwsCode(() => targetPool(base, { ...none, remove: ['10.0.0.9:11211'] }, 'test'), 'USAGE', 2)
    throwsCode(() => targetPool(base, { ...none, add: ['10.0.0.1:11211'] }, 'test'), 'USAGE', 2)
    throwsCode(() => targetPool(base, { ...none, weight: ['10.0.0.1:11211'] }, 'test'), 'USAGE', 2)
    throwsCode(() => targetPool(base, { ...none, add: ['10.0.0.4:11211=0'] }, 'test'), 'USAGE', 2)
    throwsCode(() => targetPool(base, { ...none, to: { pool: base, location: 'x' }, add: ['10.0.0.4:11211'] }, 'test'), 'USAGE', 2)
    throwsCode(() => targetPool(base, { ...none, remove: ['10.0.0.1:11211', '10.0.0.2:11211', '10.0.0.3:11211'] }, 'test'), 'POOL_INVALID', 3)
    throwsCode(() => targetPool(base, { ...none, add: ['10.0.0.4:notaport'] }, 'test'), 'POOL_INVALID', 3)
  })

  it('estimates the share of keys that change owner: ~1/4 for a ring going 3→4, most for modulo', () => {
    const ring = estimateMovedFraction(base, targetPool(base, { ...none, add: ['10.0.0.4:11211'] }, 'test'), 20_000)
    assert.ok(ring > 0.15 && ring < 0.35, String(ring))
    const modulo = validatePool({ ...poolToDocument(base), hash: 'php-memcached-default' }, 'test')
    const m = estimateMovedFraction(modulo, targetPool(modulo, { ...none, add: ['10.0.0.4:11211'] }, 'test'), 20_000)
    assert.ok(m > 0.6, String(m))
  })

  it('round-trips the rebalance record through the pool file, and names its fields in errors', () => {
    const next = targetPool(base, { ...none, add: ['10.0.0.4:11211'] }, 'test')
    const withRecord = { ...next, rebalance: { startedAt: 'a', updatedAt: 'b', handoff: 'copy' as const, threshold: 0.9, previous: base, sources: { '10.0.0.1:11211': { keysAtStart: 5, moved: 4, inPlace: 1, skipped: { gone: 1 }, failed: 0, conflicts: 0, passes: 1 } } } }
    const text = JSON.stringify(poolToDocument(withRecord))
    const back = parsePoolText(text, 'f.json')
    assert.deepEqual(back.rebalance?.sources, withRecord.rebalance.sources)
    assert.equal(back.rebalance?.previous.servers.length, 3)
    const doc = JSON.parse(text)
    doc.rebalance.sources['10.0.0.1:11211'].moved = -1
    assert.throws(() => validatePool(doc, 'f.json'), /rebalance\.sources\["10\.0\.0\.1:11211"\]\.moved/)
    doc.rebalance = { previous: { hash: 'nope', servers: ['a:1'] } }
    assert.throws(() => validatePool(doc, 'f.json'), /rebalance\.previous/)
  })
})
