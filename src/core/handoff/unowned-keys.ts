import { MemcachedNode, NodeBatch, keyEncoding } from '../protocol/index.js'
import { connectChecked, notAnswering } from '../engine/engine.js'
import { KeyBatch } from '../engine/key-batch.js'
import { KeySpool } from '../engine/spool.js'

/**
 * Copy hand-off of a rebalance, after the switch: a server that stays in the pool may still hold
 * keys it no longer owns that no copy journal lists (written there by applications on the old
 * server list after the last copy pass). They are not copied to their new owner: an application
 * may already have deleted the key there, and a late copy would bring it back stale. They are
 * deleted instead (nobody reads them there any more, and a later rebalance back must never find
 * them): dump → keys the server does not own, spooled to disk → pipelined `md <key> q`.
 */

export interface UnownedKeysResult {
  deleted: number
  failed: number
}

const BATCH = 500

export async function deleteUnownedKeys(opts: {
  source: string
  /** Whether the source owns `key` (is in its chain) under the new pool. */
  owns: (key: Buffer) => boolean
  spoolDir?: string | undefined
  signal?: AbortSignal | undefined
  /** Counts added to (returned too): what attempts before this one of a repeated clean-up deleted. */
  into?: UnownedKeysResult | undefined
}): Promise<UnownedKeysResult> {
  const spool = KeySpool.create({ root: opts.spoolDir, order: 'dump', serverNow: 0, label: `unowned-${opts.source}` })
  try {
    // 1. Spool the keys to delete as the dump streams.
    await new MemcachedNode(opts.source).dump({
      ...(opts.signal !== undefined ? { signal: opts.signal } : {}),
      onEntry: (e) => {
        if (!opts.owns(e.key) && keyEncoding(e.key) !== 'unaddressable') spool.add(e.key, e.size, e.exp, e.la)
      },
    })

    // 2. Delete them, a pipelined batch at a time (`q`: only failures answer; NF, already gone, is as good as deleted).
    const result: UnownedKeysResult = opts.into ?? { deleted: 0, failed: 0 }
    if (spool.count === 0) return result
    spool.finish()
    const conn = await connectChecked(opts.source, 'source')
    try {
      const reader = spool.reader()
      const batch = new KeyBatch(BATCH)
      const deletes = new NodeBatch()
      while (!opts.signal?.aborted) {
        const n = reader.next(batch)
        if (n === 0) break
        for (let i = 0; i < n; i++) deletes.delete(i, batch.keys, batch.keyStart[i]!, batch.keyEnd[i]!)
        await deletes.send(conn, () => undefined).then(
          () => (result.deleted += n),
          (err: unknown) => {
            // A server that stopped answering fails every batch after this one too: the step
            // ends here, and the caller repeats it (whileNotAnswering) once the server is back.
            if (notAnswering(err)) throw err
            result.failed += n
          },
        )
      }
    } finally {
      await conn.close().catch(() => undefined)
    }
    return result
  } finally {
    spool.remove()
  }
}
