/**
 * Does a metadump started while memcached expands its hash table hang the server? Measures it per
 * walk (`hash`, `all`), so the engine waits for an expansion only before the walk that needs it.
 *
 * Each attempt: a fresh memcached (-t 1, default hashpower 16), loaded past 1.5 × 2^16 items so an
 * expansion is due at the next clock tick; then dumps of the chosen walk back to back for ~2.5 s
 * (one of them straddles the expansion) while `version` is asked every 100 ms on another
 * connection. A dump or a `version` that gets no answer for 5 s = the server hung.
 *
 *   node --import tsx scripts/probe-expansion-deadlock.ts --walk all --attempts 20
 *   node --import tsx scripts/probe-expansion-deadlock.ts --walk hash --attempts 20
 *
 * Every server started here is killed by PID.
 */
import { parseArgs } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
import { startMemcached } from '../test/helpers/memcached.js'
import { MemcachedNode, MetaConnection, MetaPayload, parseAddress } from '../src/core/protocol/index.js'

const { values: argv } = parseArgs({
  options: {
    walk: { type: 'string', default: 'all' },
    attempts: { type: 'string', default: '20' },
    keys: { type: 'string', default: '110000' },
  },
})
const walk = argv.walk === 'hash' ? 'hash' : 'all'
const attempts = Number(argv.attempts)
const keys = Number(argv.keys)

async function load(address: string, n: number): Promise<void> {
  const conn = await MetaConnection.connect(parseAddress(address))
  const p = new MetaPayload(512 * 1024)
  const value = Buffer.alloc(100, 0x2e)
  const pending: Promise<void>[] = []
  for (let i = 0; i < n; i++) {
    p.command('ms', Buffer.from(`probe:${i}`)).size(value.length).flag('T', 0).flag('q').end(value)
    if (p.length >= 256 * 1024) pending.push(conn.batch(p.noop().take(), () => undefined))
  }
  pending.push(conn.batch(p.noop().take(), () => undefined))
  await Promise.all(pending)
  await conn.close()
}

async function attempt(i: number): Promise<{ hung: boolean; dumps: number; expanded: boolean }> {
  const s = await startMemcached({ threads: 1, memoryMb: 256 })
  try {
    await load(s.address, keys)
    const addr = parseAddress(s.address)
    let hung = false
    let dumps = 0
    const until = Date.now() + 2500
    const pinger = (async () => {
      const c = await MetaConnection.connect(addr, { requestTimeoutMs: 5000 })
      try {
        while (Date.now() < until && !hung) {
          await c.simple('version')
          await sleep(100)
        }
      } catch {
        hung = true
      } finally {
        await c.close().catch(() => undefined)
      }
    })()
    while (Date.now() < until && !hung) {
      try {
        await new MemcachedNode(addr).dump({ onEntry: () => undefined, mode: walk, expansionWaitMs: 0, idleTimeoutMs: 5000, retryDelayMs: 20 })
        dumps++
      } catch (err) {
        hung = true
        process.stderr.write(`attempt ${i}: ${(err as Error).message}\n`)
      }
    }
    await pinger
    let expanded = false
    if (!hung) {
      const c = await MetaConnection.connect(addr)
      expanded = (await c.stats()).get('hash_power_level') !== '16'
      await c.close()
    }
    return { hung, dumps, expanded }
  } finally {
    await s.kill()
  }
}

let hungCount = 0
for (let i = 1; i <= attempts; i++) {
  const r = await attempt(i)
  if (r.hung) hungCount++
  process.stdout.write(`walk ${walk} attempt ${i}: ${r.hung ? 'HUNG' : 'ok'} (${r.dumps} dumps${r.hung ? '' : r.expanded ? ', table expanded meanwhile' : ', no expansion seen'})\n`)
}
process.stdout.write(`walk ${walk}: ${hungCount} of ${attempts} attempts hung the server\n`)
process.exit(0)
