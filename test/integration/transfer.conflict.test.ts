import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { BatchTransfer, type TransferTarget } from '../../src/core/engine/transfer.js'
import { KeyBatch } from '../../src/core/engine/key-batch.js'
import { Tally } from '../../src/core/engine/tally.js'
import { MetaConnection, MetaPayload, parseAddress, VA } from '../../src/core/protocol/index.js'
import { startMemcached, type MemcachedServer } from '../helpers/memcached.js'

/**
 * A move's source delete (`md <key> C<cas>`) that finds the source changed (EX) or gone (NF)
 * withdraws the engine's copy at the destination, and only that copy. The application acts in
 * the window between the engine's add and its CAS delete, deterministically: the test holds the
 * engine's delete batch until the application's commands were answered by the real servers.
 */

type AppStep = (app: { source: MetaConnection; dest: MetaConnection }) => Promise<void>

async function send(conn: MetaConnection, build: (p: MetaPayload) => void): Promise<void> {
  const p = new MetaPayload()
  build(p)
  await conn.batch(p.noop().take(), () => undefined)
}

async function setItem(conn: MetaConnection, key: string, value: string, flags: number): Promise<void> {
  await send(conn, (p) => p.command('ms', Buffer.from(key)).size(Buffer.byteLength(value)).flag('F', flags).flag('T', 0).end(Buffer.from(value)))
}

async function deleteItem(conn: MetaConnection, key: string): Promise<void> {
  await send(conn, (p) => p.command('md', Buffer.from(key)).end())
}

async function getItem(conn: MetaConnection, key: string): Promise<{ value: string; flags: number } | undefined> {
  let item: { value: string; flags: number } | undefined
  const p = new MetaPayload()
  p.command('mg', Buffer.from(key)).flags('v f').end().noop()
  await conn.batch(p.take(), (r) => {
    if (r.status === VA) item = { value: r.value!.toString(), flags: r.flagInt('f') }
  })
  return item
}

describe('move conflicts: the engine withdraws only its own copy', () => {
  let source: MemcachedServer
  let dest: MemcachedServer
  const conns: MetaConnection[] = []
  const connect = async (address: string): Promise<MetaConnection> => {
    const c = await MetaConnection.connect(parseAddress(address))
    conns.push(c)
    return c
  }
  before(async () => {
    ;[source, dest] = await Promise.all([startMemcached(), startMemcached()])
  })
  after(async () => {
    await Promise.all(conns.map((c) => c.close()))
    await Promise.all([source.stop(), dest.stop()])
  })

  /** Moves `key` from source to dest with the application's `step` run between the add and the source's CAS delete. */
  async function moveWith(key: string, step: AppStep): Promise<Tally> {
    const engineSource = await connect(source.address)
    const engineDest = await connect(dest.address)
    const app = { source: await connect(source.address), dest: await connect(dest.address) }
    // Phase 1 (read) and phase 3 (CAS delete) go to the source: hold the second until the application acted.
    let sourceBatches = 0
    const batch = engineSource.batch.bind(engineSource)
    engineSource.batch = async (payload, onReply) => {
      if (++sourceBatches === 2) {
        assert.match(payload.toString('latin1'), /^md /, 'the held batch is the source delete')
        await step(app)
      }
      return batch(payload, onReply)
    }
    const target: TransferTarget = {
      address: dest.address,
      conn: engineDest,
      state: () => 'ok',
      reserve: () => true,
      settle: () => undefined,
      itemSizeMax: () => 1024 * 1024,
      clockOffset: () => 0,
    }
    const tally = new Tally([dest.address])
    const transfer = new BatchTransfer({ source: engineSource, targets: [target], route: (_k, out, at) => ((out[at] = 0), 1), maxChain: 1, mode: 'move', store: 'add', minTtl: 0, tally }, 4)
    const keys = new KeyBatch(4, 1)
    const k = Buffer.from(key)
    keys.push(k, 0, k.length, 100, -1)
    await transfer.run(keys)
    assert.equal(sourceBatches, 2, 'the engine read, then deleted the source copy')
    return tally
  }

  it('NF after the application wrote a newer value at the destination and deleted the source copy: the newer value survives', async () => {
    const conn = await connect(source.address)
    const d = await connect(dest.address)
    await setItem(conn, 'k1', 'v1', 7)
    const tally = await moveWith('k1', async ({ source: s, dest: dd }) => {
      // What PoolClient.set does during a move: write the new owner, delete the old owner's copy.
      await setItem(dd, 'k1', 'v2', 7)
      await deleteItem(s, 'k1')
    })
    assert.deepEqual(await getItem(d, 'k1'), { value: 'v2', flags: 7 })
    assert.equal(await getItem(conn, 'k1'), undefined)
    assert.equal(tally.conflicts, 0, 'NF is counted as gone, not as a conflict')
    assert.equal(tally.moved, 0)
    assert.equal(tally.failedBy['destination-error'], 0)
  })

  it('NF after the application wrote the same value with other flags at the destination: kept', async () => {
    const conn = await connect(source.address)
    const d = await connect(dest.address)
    await setItem(conn, 'k2', 'same', 1)
    await moveWith('k2', async ({ source: s, dest: dd }) => {
      await setItem(dd, 'k2', 'same', 2)
      await deleteItem(s, 'k2')
    })
    assert.deepEqual(await getItem(d, 'k2'), { value: 'same', flags: 2 })
  })

  it('EX after the application wrote a newer value at the destination and the source: both newer values stay', async () => {
    const conn = await connect(source.address)
    const d = await connect(dest.address)
    await setItem(conn, 'k3', 'v1', 0)
    const tally = await moveWith('k3', async ({ source: s, dest: dd }) => {
      await setItem(dd, 'k3', 'v2-dest', 0)
      await setItem(s, 'k3', 'v2-src', 0)
    })
    assert.deepEqual(await getItem(d, 'k3'), { value: 'v2-dest', flags: 0 })
    assert.deepEqual(await getItem(conn, 'k3'), { value: 'v2-src', flags: 0 })
    assert.equal(tally.conflicts, 1)
  })

  it('NF after the application deleted the key (source only): the engine copy is withdrawn, the key does not come back', async () => {
    const conn = await connect(source.address)
    const d = await connect(dest.address)
    await setItem(conn, 'k4', 'v1', 3)
    const tally = await moveWith('k4', async ({ source: s }) => {
      await deleteItem(s, 'k4')
    })
    assert.equal(await getItem(d, 'k4'), undefined)
    assert.equal(await getItem(conn, 'k4'), undefined)
    assert.equal(tally.moved, 0)
    assert.equal(tally.skipped.gone, 1)
  })

  it('EX after the application rewrote the source only: the engine copy (now stale) is withdrawn', async () => {
    const conn = await connect(source.address)
    const d = await connect(dest.address)
    await setItem(conn, 'k5', 'v1', 0)
    const tally = await moveWith('k5', async ({ source: s }) => {
      await setItem(s, 'k5', 'v2', 0)
    })
    assert.equal(await getItem(d, 'k5'), undefined, 'no stale copy at the destination')
    assert.deepEqual(await getItem(conn, 'k5'), { value: 'v2', flags: 0 })
    assert.equal(tally.conflicts, 1)
    assert.equal(tally.failedBy['destination-error'], 0)
  })

  it('without a conflict: moved, the source copy deleted', async () => {
    const conn = await connect(source.address)
    const d = await connect(dest.address)
    await setItem(conn, 'k6', 'v1', 9)
    const tally = await moveWith('k6', async () => undefined)
    assert.deepEqual(await getItem(d, 'k6'), { value: 'v1', flags: 9 })
    assert.equal(await getItem(conn, 'k6'), undefined)
    assert.equal(tally.moved, 1)
  })
})
