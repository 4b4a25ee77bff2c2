/**
 * One application "host" for the etcd tests, run as a child process: a PoolClient on an etcd
 * pool that prints its events as JSON lines (with Date.now()) and obeys commands on stdin:
 *   read <prefix> <count> <parity>   get every key <prefix><i> with i % 2 == parity; print hits
 *   exit                             close the client and exit
 */
import { createInterface } from 'node:readline'
import { PoolClient } from '../../src/core/client/index.js'

const url = process.argv[2]!
const out = (o: Record<string, unknown>): void => void process.stdout.write(JSON.stringify({ ...o, pid: process.pid, at: Date.now() }) + '\n')
const client = await PoolClient.fromPoolUrl(url, { checkInterval: 1, reportInterval: 1 })
client.on('topology', (e) => out({ type: 'topology', revision: e.revision, active: e.active, deactivating: e.deactivating }))
client.on('pool-unreachable', (e) => out({ type: 'pool-unreachable', revision: e.revision, message: e.error.message }))
client.on('pool-reachable', (e) => out({ type: 'pool-reachable', downForMs: e.downForMs }))
client.on('error', (err, ctx) => out({ type: 'error', during: ctx.during, message: err.message }))
const keepAlive = setInterval(() => undefined, 1000)
out({ type: 'ready', revision: client.revision })
for await (const line of createInterface({ input: process.stdin })) {
  const [cmd, prefix, count, parity] = line.trim().split(' ')
  if (cmd === 'read') {
    let hits = 0
    for (let i = Number(parity); i < Number(count); i += 2) if ((await client.get(`${prefix}${i}`)) !== undefined) hits++
    await client.settle()
    await client.flushReport()
    out({ type: 'read', hits, migrated: client.stats().migrated })
  } else if (cmd === 'exit') {
    break
  }
}
clearInterval(keepAlive)
await client.close()
out({ type: 'closed' })
