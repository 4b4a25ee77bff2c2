import { EX, NF, NodeBatch, keyEncoding } from '../protocol/index.js'
import { JournalBatch, type CopyJournal } from './copy-journal.js'
import { connectChecked, notAnswering } from '../engine/engine.js'

/**
 * Copy hand-off of a rebalance, after the switch and the catch-up: a server that stays in the
 * pool still holds the copies of keys it no longer owns. A later rebalance back would find them
 * and take them for current (the add answers NS: "in place"), so they go:
 *   `md <key> C<source cas from the journal> q` deletes the copy if it is still the one copied;
 *   EX (a client wrote it there after the copy, before the switch: the catch-up has carried that
 *   value over or invalidated the destination) → `md <key> q`, the copy is stale either way;
 *   NF → already gone.
 * Abort (before the switch): the same over the destinations, `md <key> C<destination cas> q`,
 * and an EX there is a write by an application: left alone.
 */

export interface StaleCopyResult {
  deleted: number
  /** Copies that had changed since they were copied (deleted anyway on a source, kept on a destination). */
  changed: number
  failed: number
}

const BATCH = 500

export async function deleteCopies(
  journal: CopyJournal,
  side: { kind: 'source'; address: string } | { kind: 'destinations'; addresses: readonly string[] },
  signal?: AbortSignal,
  /** Counts added to (returned too): what attempts before this one of a repeated deletion did. */
  into?: StaleCopyResult,
): Promise<StaleCopyResult> {
  const result: StaleCopyResult = into ?? { deleted: 0, changed: 0, failed: 0 }
  // A repeat walks the whole journal again: a destination's changed copies (kept) are met again,
  // and counted once; a source's were deleted by the attempt that met them.
  if (side.kind === 'destinations') result.changed = 0
  const addresses = side.kind === 'source' ? [side.address] : side.addresses
  const conns = await Promise.all(addresses.map((a) => connectChecked(a, side.kind === 'source' ? 'source' : 'destination')))
  try {
    const reader = journal.reader()
    const batch = new JournalBatch(BATCH)
    const batches = conns.map(() => new NodeBatch())
    for (;;) {
      if (signal?.aborted) break
      const n = reader.next(batch)
      if (n === 0) break
      const asked = new Uint32Array(conns.length)
      for (let i = 0; i < n; i++) {
        const key = batch.key(i)
        if (keyEncoding(key) === 'unaddressable') continue
        if (side.kind === 'source') {
          batches[0]!.deleteIfCas(i, key, 0, key.length, batch.sourceCas(i))
          asked[0]!++
        } else {
          // Unknown destination CAS: the destination already held the key, the copy is not ours.
          const t = batch.target[i]!
          if (!batch.destCasKnown(i) || t >= conns.length) continue
          batches[t]!.deleteIfCas(i, key, 0, key.length, batch.destCas(i))
          asked[t]!++
        }
      }
      await Promise.all(
        conns.map(async (c, t) => {
          if (asked[t] === 0) return
          let notDeleted = 0
          const changed: number[] = []
          try {
            await batches[t]!.send(c, (r) => {
              if (r.status === EX) changed.push(r.opaque)
              if (r.status === EX || r.status === NF) notDeleted++
            })
          } catch (err) {
            // A server that stopped answering fails every batch after this one too: the step
            // ends here, and the caller repeats it (whileNotAnswering) once the server is back.
            if (notAnswering(err)) throw err
            result.failed += asked[t]!
            return
          }
          result.deleted += Math.max(0, asked[t]! - notDeleted)
          result.changed += changed.length
          if (side.kind === 'source' && changed.length > 0) {
            const b = batches[t]!
            for (const i of changed) {
              const key = batch.key(i)
              b.delete(i, key, 0, key.length)
            }
            await b.send(c, () => undefined).then(
              () => (result.deleted += changed.length),
              (err: unknown) => {
                if (notAnswering(err)) throw err
                result.failed += changed.length
              },
            )
          }
        }),
      )
    }
    return result
  } finally {
    await Promise.all(conns.map((c) => c.close().catch(() => undefined)))
  }
}
