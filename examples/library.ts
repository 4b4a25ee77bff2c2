/**
 * A pool-aware application using memdrain's library: a read-through cache of "users" in front
 * of a (pretend) database, on the pool the CLI manages. Start a pool, run it twice, mark a
 * server deactivating in between, and watch the second run find the keys of that server and
 * move them to their new owners as it reads them:
 *
 *   ./bin/run.js demo --pool /tmp/demo.json --keys 0
 *   node --import tsx examples/library.ts /tmp/demo.json          # loads 50 users: 50 misses
 *   ./bin/run.js mark 127.0.0.1:PORT deactivating --pool /tmp/demo.json
 *   node --import tsx examples/library.ts /tmp/demo.json          # 50 hits, some moved
 *   ./bin/run.js demo --stop --pool /tmp/demo.json
 *
 * (`npm run build` first: `import ... from 'memdrain'` resolves to the package's dist/.)
 */
import { PoolClient, isPoolClientError } from 'memdrain'

interface User {
  id: number
  name: string
}

const poolFile = process.argv[2] ?? process.env.MEMDRAIN_POOL ?? 'memdrain.json'

// Options are in seconds; every one has a default (POOL_CLIENT_DEFAULTS).
const cache = await PoolClient.fromPoolFile(poolFile, { timeout: 0.5, retryAfter: 5 })
cache.on('down', ({ server, error }) => console.error(`cache server ${server} is down: ${error.message}`))
cache.on('up', ({ server }) => console.error(`cache server ${server} is back`))
cache.on('topology', ({ revision }) => console.error(`pool file changed (revision ${revision})`))
cache.on('error', (err) => console.error(`cache: ${err.message}`)) // background problems only

let loads = 0
function loadUserFromDatabase(id: number): User {
  loads++
  return { id, name: `user ${id}` }
}

async function getUser(id: number): Promise<User> {
  const key = `example:user:${id}`
  const cached = await cache.get(key) // Buffer, or undefined on a miss
  if (cached !== undefined) return JSON.parse(cached.toString()) as User
  const user = loadUserFromDatabase(id)
  try {
    await cache.set(key, JSON.stringify(user), { expires: 3600 })
  } catch (err) {
    // A write fails only when no server of the key's chain took it; the application goes on.
    if (!isPoolClientError(err)) throw err
    console.error(`not cached: ${err.code} ${err.message}`)
  }
  return user
}

const users = await Promise.all(Array.from({ length: 50 }, (_, i) => getUser(i + 1)))
const where = cache.locate('example:user:1')
console.log(`users read: ${users.length}, loaded from the database: ${loads}`)
console.log(`example:user:1 lives on ${where.chain.join(' → ')}${where.oldSources.length > 0 ? ` (was on ${where.oldSources.join(', ')})` : ''}`)

// add() stores only if the key is absent: a lock that expires by itself.
const locked = await cache.add('example:lock', 'worker-1', { expires: 10 })
const lockedAgain = await cache.add('example:lock', 'worker-2', { expires: 10 })
await cache.delete('example:lock')
console.log(`lock taken: ${locked}, taken again while held: ${lockedAgain}`)

await cache.close() // finishes background moves and repairs, writes the migration report
const s = cache.stats()
console.log(`hits ${s.hits}, misses ${s.misses}, fallback hits ${s.fallbackHits}, moved by this client ${s.migrated + s.migratedByWrites}`)
