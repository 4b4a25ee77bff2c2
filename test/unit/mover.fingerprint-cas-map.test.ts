import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { cas31, FingerprintCasMap } from '../../src/core/engine/fingerprint-cas-map.js'

describe('FingerprintCasMap', () => {
  it('says a key changed until its CAS is recorded, then only when the CAS differs', () => {
    const m = new FingerprintCasMap()
    const k = Buffer.from('user:1')
    assert.equal(m.seeChanged(k, '12345'), true, 'never copied')
    m.copied(k, Buffer.from('12345'))
    assert.equal(m.seeChanged(k, '12345'), false)
    assert.equal(m.seeChanged(k, '12346'), true)
    // CAS values past 2^53 are compared by their low 31 bits, parsed from the digits.
    m.copied(k, Buffer.from('18446744073709551615'))
    assert.equal(m.seeChanged(k, '18446744073709551615'), false)
    assert.equal(m.seeChanged(k, '18446744073709551614'), true)
    assert.equal(cas31('18446744073709551615'), Number(18446744073709551615n % 2147483648n))
  })

  it('tracks which keys a pass saw, grows, and compacts away the keys a pass did not see', () => {
    const m = new FingerprintCasMap()
    const keys = Array.from({ length: 20_000 }, (_, i) => Buffer.from(`k:${i}`))
    for (const k of keys) {
      m.seeChanged(k, '7')
      m.copied(k, Buffer.from('7'))
    }
    assert.equal(m.size, keys.length)
    m.clearSeen()
    assert.equal(m.seen(keys[0]!), false)
    for (const k of keys.slice(0, 5000)) assert.equal(m.seeChanged(k, '7'), false)
    assert.equal(m.seenCount(), 5000)
    assert.equal(m.seen(keys[10]!), true)
    assert.equal(m.seen(keys[10_000]!), false)
    assert.equal(m.seen(Buffer.from('never')), false)
    const before = m.bytes
    m.compact()
    assert.equal(m.size, 5000)
    assert.ok(m.bytes < before)
    assert.equal(m.seeChanged(keys[1]!, '7'), false, 'kept keys keep their CAS')
    assert.equal(m.seeChanged(keys[15_000]!, '7'), true, 'dropped keys are copied again')
    assert.ok(m.bytes / m.size <= 64)
  })
})
