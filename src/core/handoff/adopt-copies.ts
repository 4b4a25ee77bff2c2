import { keyEncoding, MemcachedNode } from '../protocol/index.js'
import type { CopyJournal } from './copy-journal.js'

/**
 * A resumed copy hand-off whose journal is lost (another --spool-dir, a cleared disk, another
 * host, another job's journal, a changed server list): the copies the earlier run made are
 * unknown, and one the application has since deleted at the source would be served again after
 * the switch. Before the switch a destination holds a key the source handed over only because
 * memdrain copied it there (applications still write the key to the source), so every such key
 * on a destination — its new chain includes that destination and its old chain the source — is
 * journaled as a possible copy, with no source CAS ("0"). The passes that follow compare each
 * with the source and delete it unless the source holds exactly that value and flags: a miss,
 * never a stale or resurrected key.
 */

export interface AdoptResult {
  /** Keys on the destinations journaled as possible copies. */
  adopted: number
}

/** The source CAS of an adopted record: no copy is known, compare values alone. */
export const UNKNOWN_SOURCE_CAS = Buffer.from('0')

export async function adoptPossibleCopies(opts: {
  journal: CopyJournal
  targets: readonly string[]
  /** Whether `key` is one the source hands to target `t` (its old chain includes the source, its new one `t`). */
  handedOver: (key: Buffer, t: number) => boolean
  signal?: AbortSignal | undefined
}): Promise<AdoptResult> {
  let adopted = 0
  for (let t = 0; t < opts.targets.length; t++) {
    await new MemcachedNode(opts.targets[t]!).dump({
      ...(opts.signal !== undefined ? { signal: opts.signal } : {}),
      onEntry: (e) => {
        if (keyEncoding(e.key) === 'unaddressable' || !opts.handedOver(e.key, t)) return
        opts.journal.intent(e.key, t, UNKNOWN_SOURCE_CAS)
        adopted++
      },
    })
  }
  opts.journal.sync()
  return { adopted }
}
