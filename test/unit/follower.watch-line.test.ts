import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { parseWatchLine, WATCH_SKIPPED } from '../../src/core/engine/follower.js'

/**
 * The lines of `watch mutations deletions`, in the formats memcached's logger.c prints them
 * (deletions from 1.6.20: the installed 1.6.18 answers ERROR to `watch deletions`, so this is
 * where the deletion lines are tested).
 */
function parse(line: string): { n: number; key: string } {
  const b = Buffer.from(`xx${line}\n`, 'latin1')
  const out = Buffer.alloc(300)
  const n = parseWatchLine(b, 2, b.length - 1, out)
  return { n, key: n > 0 ? out.toString('latin1', 0, n) : '' }
}

describe('parseWatchLine', () => {
  it('a deletion (1.6.20+: type=deleted … cmd=delete|md) names its key', () => {
    assert.deepEqual(parse('ts=1700000000.123456 gid=42 type=deleted key=user:7 cmd=delete clsid=1 size=5'), { n: 6, key: 'user:7' })
    assert.deepEqual(parse('ts=1700000000.5 gid=43 type=deleted key=a%20b%C3%A9 cmd=md clsid=12 size=100'), { n: 5, key: Buffer.from([0x61, 0x20, 0x62, 0xc3, 0xa9]).toString('latin1') })
  })

  it('a store names its key only when it stored', () => {
    assert.equal(parse('ts=1.2 gid=1 type=item_store key=k1 status=stored cmd=set ttl=0 clsid=1 cfd=20 size=3').key, 'k1')
    assert.equal(parse('ts=1.2 gid=2 type=item_store key=k1 status=not_stored cmd=add ttl=0 clsid=1 cfd=20 size=3').n, 0)
    assert.equal(parse('ts=1.2 gid=3 type=item_store key=k1 status=exists cmd=cas ttl=0 clsid=1 cfd=20 size=3').n, 0)
  })

  it("other events are not changes; memcached's loss marker is reported", () => {
    assert.equal(parse('ts=1.2 gid=4 type=item_get key=k1 status=found clsid=1 cfd=20 size=3').n, 0)
    assert.equal(parse('ts=1.2 gid=5 type=eviction key=k1 fetch=no ttl=-1 la=3 clsid=1 size=3').n, 0)
    assert.equal(parse('skipped=17').n, WATCH_SKIPPED)
    assert.equal(parse('[skipped: 17]').n, WATCH_SKIPPED)
    assert.equal(parse('OK').n, 0)
  })
})
