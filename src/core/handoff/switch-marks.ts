import { randomBytes } from 'node:crypto'
import { connectChecked } from '../engine/engine.js'
import { MemcachedNode } from '../protocol/index.js'

/**
 * The CAS each destination gives an item stored right after the switch command returned.
 *
 * memcached numbers every store from one counter per server, so an item whose CAS is above the
 * mark was written after the switch was done; the applications no longer write the old servers
 * then (the switch's contract), so that write is newer than any value at the source. The
 * refresher and the catch-up, meeting a destination changed on both sides, keep such a write
 * instead of deleting it as "which is newer is unknowable" (a miss of a key the application has
 * just written). A write made during the switch command (some hosts switched, others not) has a
 * CAS below the mark and is still deleted. Undefined for a destination that did not answer: the
 * rule without the mark applies there.
 */
export async function takeSwitchMarks(targets: readonly string[]): Promise<(bigint | undefined)[]> {
  const key = Buffer.from(`memdrain:switch-mark:${randomBytes(8).toString('hex')}`)
  return Promise.all(
    targets.map(async (address) => {
      try {
        const conn = await connectChecked(address, 'destination')
        try {
          const node = new MemcachedNode(() => conn)
          const [stored] = await node.set([{ key, item: { value: Buffer.from('1'), flags: 0, ttl: 60 } }])
          await node.delete([key])
          return stored?.stored === true ? BigInt(stored.cas) : undefined
        } finally {
          await conn.close().catch(() => undefined)
        }
      } catch {
        return undefined
      }
    }),
  )
}

/** Whether a destination item's CAS (digits) shows a write made after the switch (see takeSwitchMarks). */
export function writtenAfterSwitch(cas: string | undefined, mark: bigint | undefined): boolean {
  return cas !== undefined && mark !== undefined && /^\d+$/.test(cas) && BigInt(cas) > mark
}
