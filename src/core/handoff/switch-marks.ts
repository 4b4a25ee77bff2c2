import { randomBytes } from 'node:crypto'
import { connectChecked } from '../engine/engine.js'
import { MemcachedNode, type MetaConnection } from '../protocol/index.js'

/**
 * The CAS each destination gives an item stored right after the switch command returned.
 *
 * memcached numbers every store from one counter per server, so an item whose CAS is above the
 * mark was written after the switch was done; the applications no longer write the old servers
 * then (the switch's contract), so that write is newer than any value at the source. The
 * refresher and the catch-up, meeting a destination changed on both sides, keep such a write
 * instead of deleting it as "which is newer is unknowable" (a miss of a key the application has
 * just written). A write made during the switch command (some hosts switched, others not), or
 * between its return and the mark, has a CAS below the mark and is still deleted: the
 * connections are opened before the switch so that gap is one round trip. Undefined for a
 * destination that did not answer: the rule without the mark applies there.
 */
export interface SwitchMarker {
  /** Stores (and deletes) a marker item on each destination: its CAS per destination. */
  take(): Promise<(bigint | undefined)[]>
  close(): Promise<void>
}

/** Connects to each destination now (before the switch command runs). */
export async function prepareSwitchMarks(targets: readonly string[]): Promise<SwitchMarker> {
  const conns = await Promise.all(targets.map((address) => connectChecked(address, 'destination').catch((): MetaConnection | undefined => undefined)))
  const key = Buffer.from(`memdrain:switch-mark:${randomBytes(8).toString('hex')}`)
  return {
    take: () =>
      Promise.all(
        conns.map(async (conn) => {
          if (conn === undefined || conn.closed) return undefined
          try {
            const node = MemcachedNode.of(conn)
            const [stored] = await node.set([{ key, item: { value: Buffer.from('1'), flags: 0, ttl: 60 } }])
            await node.delete([key])
            return stored?.stored === true ? BigInt(stored.cas) : undefined
          } catch {
            return undefined
          }
        }),
      ),
    close: async () => {
      await Promise.all(conns.map((c) => c?.close().catch(() => undefined)))
    },
  }
}

/** Whether a destination item's CAS (digits) shows a write made after the switch (see prepareSwitchMarks). */
export function writtenAfterSwitch(cas: string | undefined, mark: bigint | undefined): boolean {
  return cas !== undefined && mark !== undefined && /^\d+$/.test(cas) && BigInt(cas) > mark
}
