import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { BatchTransfer, type TransferTarget } from '../../src/core/engine/transfer.js'
import { KeyBatch } from '../../src/core/engine/key-batch.js'
import { FingerprintSet } from '../../src/core/engine/fingerprint-set.js'
import { Tally } from '../../src/core/engine/tally.js'
import { MetaConnection, MetaPayload, parseAddress, VA } from '../../src/core/protocol/index.js'
import { PoolClient } from '../../src/core/client/index.js'
import type { ItemForMove, ServerNode } from '../../src/core/client/node.js'
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

/** Connections opened by a suite, closed after it. */
function connections(): { connect: (address: string) => Promise<MetaConnection>; closeAll: () => Promise<void> } {
  const conns: MetaConnection[] = []
  return {
    connect: async (address) => {
      const c = await MetaConnection.connect(parseAddress(address))
      conns.push(c)
      return c
    },
    closeAll: async () => {
      await Promise.all(conns.map((c) => c.close()))
    },
  }
}

/**
 * The engine's move of one key from `from` to `to` (a BatchTransfer over real connections), with
 * `beforeDelete` awaited after the read and the add, before the source's CAS delete is sent.
 * With `deferred` (a job's set, see TransferOptions.deferred), `sourceDeletes` says how many
 * source delete batches this move is expected to send (0: it left the source to another mover).
 */
async function engineMove(
  from: string,
  to: string,
  key: string,
  connect: (address: string) => Promise<MetaConnection>,
  beforeDelete: () => Promise<void>,
  deferred?: { set: FingerprintSet; sourceDeletes: number },
): Promise<Tally> {
  const engineSource = await connect(from)
  const engineDest = await connect(to)
  // Phase 1 (read) and phase 3 (CAS delete) go to the source: hold the second.
  let sourceBatches = 0
  const batch = engineSource.batch.bind(engineSource)
  engineSource.batch = async (payload, onReply) => {
    if (++sourceBatches === 2) {
      assert.match(Buffer.from(payload).toString('latin1'), /^md /, 'the held batch is the source delete')
      await beforeDelete()
    }
    return batch(payload, onReply)
  }
  const target: TransferTarget = {
    address: to,
    conn: engineDest,
    state: () => 'ok',
    reserve: () => true,
    settle: () => undefined,
    itemSizeMax: () => 1024 * 1024,
    clockOffset: () => 0,
  }
  const tally = new Tally([to])
  const transfer = new BatchTransfer({ source: engineSource, targets: [target], route: (_k, out, at) => ((out[at] = 0), 1), maxChain: 1, mode: 'move', store: 'add', minTtl: 0, tally, deferred: deferred?.set }, 4)
  const keys = new KeyBatch(4, 1)
  const k = Buffer.from(key)
  keys.push(k, 0, k.length, 100, -1)
  await transfer.run(keys)
  assert.equal(sourceBatches, 1 + (deferred?.sourceDeletes ?? 1), deferred?.sourceDeletes === 0 ? 'the engine read, and left the source copy' : 'the engine read, then deleted the source copy')
  return tally
}

describe('move conflicts: the engine withdraws only its own copy', () => {
  let source: MemcachedServer
  let dest: MemcachedServer
  const { connect, closeAll } = connections()
  before(async () => {
    ;[source, dest] = await Promise.all([startMemcached(), startMemcached()])
  })
  after(async () => {
    await closeAll()
    await Promise.all([source.stop(), dest.stop()])
  })

  /** Moves `key` from source to dest with the application's `step` run between the add and the source's CAS delete. */
  async function moveWith(key: string, step: AppStep): Promise<Tally> {
    const app = { source: await connect(source.address), dest: await connect(dest.address) }
    return engineMove(source.address, dest.address, key, connect, () => step(app))
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

describe('the engine and a PoolClient moving the same key at once: it ends at its owner', () => {
  let source: MemcachedServer
  let dest: MemcachedServer
  let dir: string
  let client: PoolClient
  const { connect, closeAll } = connections()
  const nodeOf = (address: string): ServerNode => (client as unknown as { node(a: string): ServerNode }).node(address)
  before(async () => {
    ;[source, dest] = await Promise.all([startMemcached(), startMemcached()])
    dir = await mkdtemp(path.join(tmpdir(), 'memdrain-move-race-'))
    const file = path.join(dir, 'memdrain.json')
    // The source is being drained: every key's chain is the destination, its old copy at the source.
    const transition = { startedAt: '2025-01-01T00:00:00.000Z', keysAtStart: 10, threshold: 0.95 }
    await writeFile(file, JSON.stringify({ hash: 'php-memcached-libketama', servers: [{ address: dest.address }, { address: source.address, state: 'deactivating', transition }] }) + '\n')
    client = await PoolClient.fromPoolFile(file, { report: false })
  })
  after(async () => {
    await client.close()
    await closeAll()
    await Promise.all([source.stop(), dest.stop()])
    await rm(dir, { recursive: true, force: true })
  })

  /** A key the client reads through from the source. */
  const movingKey = (prefix: string): string => {
    const k = Array.from({ length: 100 }, (_, i) => `${prefix}:${i}`).find((x) => client.locate(x).oldSources.includes(source.address))
    assert.ok(k !== undefined)
    return k
  }

  it('the engine stores its copy, the client (whose add found it) deletes the source first: the copy stays', async () => {
    const key = movingKey('race-a')
    const s = await connect(source.address)
    const d = await connect(dest.address)
    await setItem(s, key, 'v1', 5)
    // The client reads the source; before it adds, the engine reads and adds too, and waits before its source delete.
    const node = nodeOf(source.address)
    const read = node.readForMove.bind(node)
    let engine: Promise<Tally> | undefined
    let release!: () => void
    node.readForMove = async (k): Promise<ItemForMove | undefined> => {
      node.readForMove = read
      const item = await read(k)
      await new Promise<void>((held) => {
        engine = engineMove(source.address, dest.address, key, connect, () => {
          held()
          return new Promise<void>((r) => (release = r))
        })
      })
      return item
    }
    assert.equal((await client.get(key))?.toString(), 'v1')
    await client.settle()
    release()
    const tally = await engine!
    assert.deepEqual(await getItem(d, key), { value: 'v1', flags: 5 }, 'the key is at its owner')
    assert.equal(await getItem(s, key), undefined, 'and gone from the source')
    assert.equal(tally.moved, 1, 'the engine, whose copy it is, completed the move')
  })

  it('the client stores its copy, the engine (whose add found it) leaves the source delete to the client: the copy stays', async () => {
    const key = movingKey('race-b')
    const s = await connect(source.address)
    const d = await connect(dest.address)
    await setItem(s, key, 'v1', 5)
    // The engine's job keeps one set of keys whose source delete it put off (a later pass deletes them).
    const deferred = new FingerprintSet()
    // The client has read and added; before its CAS delete at the source, the engine reads the key and adds (NS: the client's copy).
    const node = nodeOf(source.address)
    const del = node.deleteIfCas.bind(node)
    let engine: Tally | undefined
    node.deleteIfCas = async (k, cas) => {
      node.deleteIfCas = del
      engine = await engineMove(source.address, dest.address, key, connect, async () => undefined, { set: deferred, sourceDeletes: 0 })
      return del(k, cas)
    }
    const migrated = client.stats().migrated
    assert.equal((await client.get(key))?.toString(), 'v1')
    await client.settle()
    assert.deepEqual(await getItem(d, key), { value: 'v1', flags: 5 }, 'the key is at its owner')
    assert.equal(await getItem(s, key), undefined, 'and gone from the source')
    assert.equal(client.stats().migrated, migrated + 1, 'the client, whose copy it is, completed the move')
    assert.equal(engine!.inPlace + engine!.moved, 0, 'the engine counted nothing yet')
    // The engine's next pass: the key is no longer at the source, nothing to do.
    const next = await engineMove(source.address, dest.address, key, connect, async () => undefined, { set: deferred, sourceDeletes: 0 })
    assert.equal(next.inPlace + next.moved, 0)
    assert.deepEqual(await getItem(d, key), { value: 'v1', flags: 5 })
  })

  it('a source copy the engine put off and still finds on its next pass is deleted then (in place)', async () => {
    const key = movingKey('race-c')
    const s = await connect(source.address)
    const d = await connect(dest.address)
    await setItem(s, key, 'v1', 5)
    await setItem(d, key, 'v1', 5)
    const deferred = new FingerprintSet()
    const first = await engineMove(source.address, dest.address, key, connect, async () => undefined, { set: deferred, sourceDeletes: 0 })
    assert.equal(first.inPlace, 0)
    assert.deepEqual(await getItem(s, key), { value: 'v1', flags: 5 }, 'left for a mover in flight')
    const second = await engineMove(source.address, dest.address, key, connect, async () => undefined, { set: deferred, sourceDeletes: 1 })
    assert.equal(second.inPlace, 1)
    assert.equal(await getItem(s, key), undefined, 'deleted by the next pass')
    assert.deepEqual(await getItem(d, key), { value: 'v1', flags: 5 })
  })
})
