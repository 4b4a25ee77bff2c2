import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { appendFileSync, existsSync, mkdtempSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { CopyJournal, JournalBatch, copyJournalFile, removeCopyJournal } from '../../src/core/handoff/copy-journal.js'
import { transitionedRatio } from '../../src/core/pool/transition.js'

const root = mkdtempSync(path.join(tmpdir(), 'memdrain-journal-test-'))
after(() => rmSync(root, { recursive: true, force: true }))

function readAll(j: CopyJournal): { key: string; target: number; src: string; dst: string | undefined }[] {
  const out: { key: string; target: number; src: string; dst: string | undefined }[] = []
  const reader = j.reader()
  const batch = new JournalBatch(3)
  while (reader.next(batch) > 0) {
    for (let i = 0; i < batch.count; i++) {
      out.push({ key: batch.key(i).toString('latin1'), target: batch.target[i]!, src: batch.sourceCas(i).toString(), dst: batch.destCasKnown(i) ? batch.destCas(i).toString() : undefined })
    }
  }
  return out
}

describe('CopyJournal', () => {
  it('lives at a stable place per pool and server', () => {
    const a = copyJournalFile(root, '/etc/memdrain.json', '10.0.0.1:11211')
    assert.equal(a, copyJournalFile(root, '/etc/memdrain.json', '10.0.0.1:11211'))
    assert.notEqual(a, copyJournalFile(root, '/etc/other.json', '10.0.0.1:11211'))
    assert.notEqual(a, copyJournalFile(root, '/etc/memdrain.json', '10.0.0.2:11211'))
    assert.ok(a.startsWith(root))
  })

  it('round-trips records across reopen, including unknown destination CAS and binary keys', () => {
    const file = copyJournalFile(root, 'pool-a', 's:1')
    const j = CopyJournal.open(file, 'd1\nd2')
    const keys = [Buffer.from('a'), Buffer.from([0, 0x20, 0xff]), Buffer.alloc(250, 0x6b), Buffer.from('ключ')]
    keys.forEach((k, i) => j.append(k, i % 2, Buffer.from(`${1000 + i}`), i === 3 ? undefined : Buffer.from('18446744073709551615')))
    assert.equal(j.count, 4)
    j.close()

    const seen: [string, number][] = []
    const again = CopyJournal.open(file, 'd1\nd2', (key, t) => seen.push([key.toString('hex'), t]))
    assert.equal(again.count, 4)
    assert.deepEqual(seen, keys.map((k, i) => [k.toString('hex'), i % 2]))
    again.append(Buffer.from('late'), 1, Buffer.from('7'), Buffer.from('8'))
    const all = readAll(again)
    assert.equal(all.length, 5)
    assert.deepEqual(all[3], { key: Buffer.from('ключ').toString('latin1'), target: 1, src: '1003', dst: undefined })
    assert.deepEqual(all[4], { key: 'late', target: 1, src: '7', dst: '8' })
    assert.equal(all[0]!.dst, '18446744073709551615')
    again.close()
  })

  it('cuts a torn last record at open and appends after it', () => {
    const file = copyJournalFile(root, 'pool-b', 's:1')
    const j = CopyJournal.open(file, 'ctx')
    j.append(Buffer.from('one'), 0, Buffer.from('1'), Buffer.from('2'))
    j.close()
    const whole = statSync(file).size
    appendFileSync(file, Buffer.from([5, 0x61, 0x62])) // a crash in the middle of a record
    const again = CopyJournal.open(file, 'ctx')
    assert.equal(again.count, 1)
    assert.equal(statSync(file).size, whole)
    again.append(Buffer.from('two'), 0, Buffer.from('3'), Buffer.from('4'))
    assert.deepEqual(readAll(again).map((r) => r.key), ['one', 'two'])
    again.close()
  })

  it('discards a journal written for other destinations (the catch-up state lives in the pool record, not here)', () => {
    const file = copyJournalFile(root, 'pool-c', 's:1')
    const j = CopyJournal.open(file, 'x\ny')
    j.append(Buffer.from('k'), 1, Buffer.from('1'), Buffer.from('2'))
    j.close()
    const other = CopyJournal.open(file, 'x\ny\nz')
    assert.equal(other.count, 0)
    other.close()
    removeCopyJournal(file)
    assert.equal(existsSync(path.dirname(file)), false)
  })
})

describe('CopyJournal: write-ahead, binding, latest records', () => {
  it('an intent is "possibly copied" until its answer is journaled; the index keeps the latest record and its destination CAS', () => {
    const file = copyJournalFile(root, 'pool-wa', 's:1')
    const j = CopyJournal.open(file, 'd1\nd2', undefined, { id: 'job-1', resume: false })
    const k = Buffer.from('key')
    j.intent(k, 1, Buffer.from('10'))
    assert.equal(j.index.latest(k, 1), 0)
    assert.equal(j.index.destCas(k, 1), undefined, 'unknown until the destination answered')
    j.append(k, 1, Buffer.from('10'), Buffer.from('18446744073709551615'))
    assert.equal(j.index.latest(k, 1), 1)
    assert.equal(j.index.destCas(k, 1), '18446744073709551615', 'a CAS past 2^53 survives')
    assert.equal(j.index.has(k, 0), false, 'per destination')
    j.intent(Buffer.from('lost'), 0, Buffer.from('11')) // killed before its answer
    j.close()
    const handled: string[] = []
    const again = CopyJournal.open(file, 'd1\nd2', (key) => handled.push(key.toString()), { id: 'job-1', resume: true })
    assert.equal(again.lost, undefined)
    assert.deepEqual(handled, ['key'], 'a key with only an intent is copied again (its add finds whether it landed)')
    assert.equal(again.index.latest(k, 1), 1)
    assert.equal(again.index.destCas(Buffer.from('lost'), 0), undefined)
    const batch = new JournalBatch(10)
    const reader = again.reader(3, 1)
    assert.equal(reader.next(batch), 2, 'records 1 and 2 of 0..2')
    assert.deepEqual([batch.seq[0], batch.intent[0], batch.seq[1], batch.intent[1]], [1, 0, 2, 1])
    again.close()
  })

  it('the index knows which source item a copy holds (copiedAt), from appends and from a reopened journal; not for an intent or a forgotten copy', () => {
    const file = copyJournalFile(root, 'pool-src', 's:1')
    const j = CopyJournal.open(file, 'd1', undefined, { id: 'job-s', resume: false })
    const k = Buffer.from('hot')
    j.intent(k, 0, Buffer.from('18446744073709551000'))
    assert.equal(j.index.copiedAt(k, 0, Buffer.from('18446744073709551000')), false, 'an unanswered write proves nothing')
    j.append(k, 0, Buffer.from('18446744073709551000'), Buffer.from('7'))
    assert.equal(j.index.copiedAt(k, 0, Buffer.from('18446744073709551000')), true)
    assert.equal(j.index.copiedAt(k, 0, Buffer.from('18446744073709551001')), false, 'a newer source item (CAS past 2^53)')
    assert.equal(j.index.copiedAt(k, 1, Buffer.from('18446744073709551000')), false, 'per destination')
    j.close()
    const again = CopyJournal.open(file, 'd1', undefined, { id: 'job-s', resume: true })
    assert.equal(again.index.copiedAt(k, 0, Buffer.from('18446744073709551000')), true, 'rebuilt from the journal')
    again.index.forget(k, 0)
    assert.equal(again.index.copiedAt(k, 0, Buffer.from('18446744073709551000')), false)
    again.close()
    removeCopyJournal(file)
  })

  it('a resumed job whose journal is missing, another job\'s, or for other destinations gets a fresh one with `lost` said', () => {
    const file = copyJournalFile(root, 'pool-lost', 's:1')
    const missing = CopyJournal.open(file, 'a', undefined, { id: 'job-1', resume: true })
    assert.match(missing.lost ?? '', /no copy journal at/)
    missing.append(Buffer.from('k'), 0, Buffer.from('1'), Buffer.from('2'))
    missing.close()
    const other = CopyJournal.open(file, 'a', undefined, { id: 'job-2', resume: true })
    assert.match(other.lost ?? '', /belongs to another job \(job-1, this job is job-2\)/)
    assert.equal(other.count, 0)
    other.append(Buffer.from('k'), 0, Buffer.from('1'), Buffer.from('2'))
    other.close()
    const moved = CopyJournal.open(file, 'b', undefined, { id: 'job-2', resume: true })
    assert.match(moved.lost ?? '', /written for other destinations/)
    moved.close()
    removeCopyJournal(file)
  })

  it('a write error breaks the journal for good: every later append and flush throws exit 3', () => {
    const file = copyJournalFile(root, 'pool-broken', 's:1')
    const j = CopyJournal.open(file, 'a')
    j.intent(Buffer.from('k'), 0, Buffer.from('1'))
    // Simulate the disk going away under it: close the descriptor behind its back.
    ;(j as unknown as { fd: number }).fd = 999_999
    assert.throws(() => j.flush(), (err: Error & { exitCode?: number }) => err.exitCode === 3)
    assert.throws(() => j.intent(Buffer.from('x'), 0, Buffer.from('2')), (err: Error & { exitCode?: number }) => err.exitCode === 3)
    assert.notEqual(j.error, undefined)
    removeCopyJournal(file)
  })
})

describe('transitionedRatio', () => {
  const base = { startedAt: '', updatedAt: '', movedByClients: 0, failed: 0, conflicts: 0, threshold: 0.95, handoff: 'move' as const, passes: 1 }
  it('counts keys gone or expiring at the source as nothing left to move', () => {
    assert.equal(transitionedRatio({ ...base, keysAtStart: 100, moved: 80, inPlace: 0, skipped: {} }), 0.8)
    assert.equal(transitionedRatio({ ...base, keysAtStart: 100, moved: 80, inPlace: 10, skipped: { gone: 5, expiring: 5 } }), 1)
    assert.equal(transitionedRatio({ ...base, keysAtStart: 100, moved: 90, inPlace: 0, skipped: { 'too-large': 10 } }), 0.9)
    assert.equal(transitionedRatio({ ...base, keysAtStart: 10, moved: 0, inPlace: 0, skipped: { gone: 10 } }), 1)
    assert.equal(transitionedRatio({ ...base, keysAtStart: 0, moved: 0, inPlace: 0, skipped: {} }), 1)
  })

  it('counts keys moved by clients as transitioned, not as gone, and never more of them than the drain found gone', () => {
    // 50 moved by clients after the dump (the drain found them gone), 40 by the drain, 10 failed: 90 of 100.
    assert.equal(transitionedRatio({ ...base, keysAtStart: 100, moved: 40, inPlace: 0, movedByClients: 50, skipped: { gone: 50 } }), 0.9)
    // Clients also moved 30 keys before the dump (not among the keys at start): only the 50 found gone count.
    assert.equal(transitionedRatio({ ...base, keysAtStart: 100, moved: 40, inPlace: 0, movedByClients: 80, skipped: { gone: 50 } }), 0.9)
    // Reported moves that lag behind: the rest of the gone keys are deleted or expired ones.
    assert.equal(transitionedRatio({ ...base, keysAtStart: 100, moved: 45, inPlace: 0, movedByClients: 40, skipped: { gone: 50 } }), 85 / 90)
  })
})
