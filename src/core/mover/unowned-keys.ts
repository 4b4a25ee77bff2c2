import { closeSync, mkdirSync, mkdtempSync, openSync, readSync, rmSync, writeSync } from 'node:fs'
import path from 'node:path'
import { tmpdir } from 'node:os'
import { MemdrainError, ExitCode } from '../errors.js'
import { MetaPayload, metadump, parseAddress, keyEncoding } from '../protocol/index.js'
import { connectChecked } from './engine.js'

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

const WRITE_BUFFER = 256 * 1024
const BATCH = 500

export async function deleteUnownedKeys(opts: {
  source: string
  /** Whether the source owns `key` (is in its chain) under the new pool. */
  owns: (key: Buffer) => boolean
  spoolDir?: string | undefined
  signal?: AbortSignal | undefined
}): Promise<UnownedKeysResult> {
  const root = opts.spoolDir ?? path.join(tmpdir(), 'memdrain')
  let dir: string
  try {
    mkdirSync(root, { recursive: true, mode: 0o700 })
    dir = mkdtempSync(path.join(root, `unowned-${opts.source.replace(/[^A-Za-z0-9.-]/g, '_')}-`))
  } catch (err) {
    throw new MemdrainError(`cannot write the key spool in ${root}: ${(err as Error).message}`, { code: 'SPOOL_FAILED', exitCode: ExitCode.precondition, cause: err })
  }
  const file = path.join(dir, 'keys.spool')
  const fd = openSync(file, 'w+', 0o600)
  try {
    // 1. Spool the keys to delete (u8 length + bytes), as the dump streams.
    const buf = Buffer.allocUnsafe(WRITE_BUFFER)
    let fill = 0
    let count = 0
    const flush = (): void => {
      let off = 0
      while (off < fill) off += writeSync(fd, buf, off, fill - off)
      fill = 0
    }
    await metadump(parseAddress(opts.source), {
      ...(opts.signal !== undefined ? { signal: opts.signal } : {}),
      onEntry: (e) => {
        if (opts.owns(e.key) || keyEncoding(e.key) === 'unaddressable') return
        if (fill + 1 + e.key.length > WRITE_BUFFER) flush()
        buf[fill++] = e.key.length
        e.key.copy(buf, fill)
        fill += e.key.length
        count++
      },
    })
    flush()

    // 2. Delete them, a pipelined batch at a time.
    const result: UnownedKeysResult = { deleted: 0, failed: 0 }
    if (count === 0) return result
    const conn = await connectChecked(opts.source, 'source')
    try {
      const payload = new MetaPayload()
      const rbuf = Buffer.allocUnsafe(WRITE_BUFFER)
      let start = 0
      let end = 0
      let pos = 0
      let inBatch = 0
      const send = async (): Promise<void> => {
        if (inBatch === 0) return
        const n = inBatch
        inBatch = 0
        // `q`: only failures answer; NF (already gone) is as good as deleted.
        await conn.batch(payload.noop().take(), () => undefined).then(
          () => (result.deleted += n),
          () => (result.failed += n),
        )
      }
      for (;;) {
        if (opts.signal?.aborted) break
        if (end - start < 1 || end - start < 1 + rbuf[start]!) {
          rbuf.copy(rbuf, 0, start, end)
          end -= start
          start = 0
          const n = readSync(fd, rbuf, end, rbuf.length - end, pos)
          pos += n
          end += n
          if (n === 0) break
          continue
        }
        const len = rbuf[start]!
        payload.command('md', rbuf.subarray(start + 1, start + 1 + len)).flags('q').end()
        start += 1 + len
        if (++inBatch >= BATCH) await send()
      }
      await send()
    } finally {
      await conn.close().catch(() => undefined)
    }
    return result
  } finally {
    closeSync(fd)
    rmSync(dir, { recursive: true, force: true })
  }
}
