/**
 * mcrouter configs in and out. A pool is a `"pools"` entry (or a pool defined inline in a
 * PoolRoute); its servers, in configuration order, are the hash route's children. The hash comes
 * from the routes that use the pool, as mcrouter builds it (McRouteHandleProvider makePoolRoute,
 * HashRouteFactory): a pool's `"weights"` select WeightedCh3 with those weights, then the
 * PoolRoute's `"hash"` (a name, or an object merged key by key) overrides; a HashRoute over
 * `"Pool|NAME"` reads `hash_func`, `salt` and `weights` from itself. The default is Ch3.
 * mcrouter reads JSON with comments and trailing commas; jsonc-parser does too, and edits a
 * template in place (export), keeping everything else byte for byte.
 */

import { applyEdits, modify, parse, printParseErrorCode, type JSONPath, type ParseError } from 'jsonc-parser'
import { isHashName } from '../../placement/registry.js'
import { activeServers, type Pool } from '../model.js'
import { validatePool } from '../validate.js'
import { configError, configUnsupported, pickPoolName, type ImportedPool } from './common.js'

const STRATEGY: Readonly<Record<string, string>> = { Ch3: 'mcrouter-ch3', Crc32: 'mcrouter-crc32', WeightedCh3: 'mcrouter-weighted-ch3' }

type Json = unknown
type JsonObject = Record<string, Json>

function isObject(v: Json): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** The hash a route applies to a pool, as mcrouter merges it. */
interface HashUse {
  func: string
  salt?: string | undefined
  weights?: Json
  bucketize?: boolean
  shardSplits?: boolean
  /** Where the weights this use reads are written (for export). */
  weightsPath?: JSONPath
  /** Where the route is, for messages. */
  at: string
}

interface PoolDefinition {
  servers: Json
  weights?: Json
  /** JSON path of the pool object. */
  path: JSONPath
}

interface Analysis {
  pool: PoolDefinition
  uses: HashUse[]
}

function pathText(p: JSONPath): string {
  return p.map((k) => (typeof k === 'number' ? `[${k}]` : `.${k}`)).join('').replace(/^\./, '')
}

function parseJsonc(text: string, file: string): JsonObject {
  const errors: ParseError[] = []
  const root: Json = parse(text, errors, { allowTrailingComma: true, disallowComments: false })
  if (errors.length > 0) {
    const e = errors[0]!
    const line = text.slice(0, e.offset).split('\n').length
    throw configError(file, '(document)', `is not valid JSON (${printParseErrorCode(e.error)} at line ${line})`)
  }
  if (!isObject(root)) throw configError(file, '(document)', 'must be a JSON object with "pools" and "route" or "routes"')
  return root
}

/** Every route in the config that uses pool `name`, with the hash it applies. */
function analyse(root: JsonObject, name: string, file: string): Analysis {
  const pools = isObject(root.pools) ? root.pools : {}
  let pool: PoolDefinition | undefined = isObject(pools[name]) ? { servers: pools[name].servers, weights: pools[name].weights, path: ['pools', name] } : undefined
  const uses: HashUse[] = []
  const poolWeights = (def: PoolDefinition): Partial<HashUse> =>
    def.weights !== undefined ? { func: 'WeightedCh3', weights: def.weights, weightsPath: [...def.path, 'weights'] } : {}

  const walk = (node: Json, at: JSONPath, parent: JsonObject | undefined): void => {
    if (typeof node === 'string') {
      const m = /^(PoolRoute|Pool)\|(.+)$/.exec(node)
      if (m === null || m[2] !== name) return
      if (m[1] === 'PoolRoute') {
        uses.push({ func: 'Ch3', ...(pool !== undefined ? poolWeights(pool) : {}), at: pathText(at) })
      } else if (parent !== undefined && parent.type === 'HashRoute' && at[at.length - 1] === 'children') {
        uses.push(hashRouteUse(parent, at.slice(0, -1)))
      } else {
        throw configUnsupported(file, pathText(at), `"${node}" sends requests to the pool's servers other than by a hash route; memdrain cannot tell which server owns a key`)
      }
      return
    }
    if (Array.isArray(node)) {
      node.forEach((v, i) => walk(v, [...at, i], parent))
      return
    }
    if (!isObject(node)) return
    if (node.type === 'PoolRoute') {
      const ref = node.pool
      const refName = typeof ref === 'string' ? ref : isObject(ref) ? ref.name : undefined
      if (refName === name) {
        if (isObject(ref)) pool = { servers: ref.servers, weights: ref.weights, path: [...at, 'pool'] }
        if (pool === undefined) throw configError(file, pathText(at), `uses pool "${name}", which "pools" does not define`)
        uses.push(poolRouteUse(node, pool, at))
      }
    }
    for (const [k, v] of Object.entries(node)) {
      if (k === 'pools') continue
      walk(v, [...at, k], node)
    }
  }

  const poolRouteUse = (node: JsonObject, def: PoolDefinition, at: JSONPath): HashUse => {
    const use: HashUse = { func: 'Ch3', ...poolWeights(def), at: pathText(at) }
    const hash = node.hash
    if (typeof hash === 'string') use.func = hash
    else if (isObject(hash)) {
      if (typeof hash.hash_func === 'string') use.func = hash.hash_func
      if (hash.salt !== undefined) use.salt = String(hash.salt)
      if (hash.weights !== undefined) {
        use.weights = hash.weights
        use.weightsPath = [...at, 'hash', 'weights']
      }
    } else if (hash !== undefined) throw configError(file, `${pathText(at)}.hash`, 'is not a string or an object')
    if (node.bucketize === true) use.bucketize = true
    if (node.shard_splits !== undefined) use.shardSplits = true
    return use
  }
  const hashRouteUse = (node: JsonObject, at: JSONPath): HashUse => ({
    func: typeof node.hash_func === 'string' ? node.hash_func : 'Ch3',
    ...(node.salt !== undefined ? { salt: String(node.salt) } : {}),
    ...(node.weights !== undefined ? { weights: node.weights, weightsPath: [...at, 'weights'] } : {}),
    at: pathText(at),
  })

  for (const key of ['route', 'routes', 'named_handles']) if (root[key] !== undefined) walk(root[key], [key], undefined)
  if (pool === undefined) throw configError(file, name, 'no such pool')
  return { pool, uses }
}

/** Names of the pools a config defines ("pools" entries and pools defined inside PoolRoutes). */
function poolNames(root: JsonObject): string[] {
  const names = new Set(isObject(root.pools) ? Object.keys(root.pools) : [])
  const walk = (node: Json): void => {
    if (Array.isArray(node)) node.forEach(walk)
    else if (isObject(node)) {
      if (node.type === 'PoolRoute' && isObject(node.pool) && typeof node.pool.name === 'string') names.add(node.pool.name)
      Object.values(node).forEach(walk)
    }
  }
  walk(root.route)
  walk(root.routes)
  return [...names]
}

/** "host:port[:protocol[:security…]]" or "[v6]:port[:…]" → host, port and what follows. */
function parseServer(entry: Json, field: string, file: string): { host: string; port: number; extra: string } {
  if (typeof entry !== 'string') throw configError(file, field, 'must be a string "host:port"')
  if (/[%@]/.test(entry)) throw configUnsupported(file, field, `"${entry}" uses a macro; give memdrain the config as mcrouter sees it after expansion`)
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:[\]]+):(\d+)(:.*)?$/.exec(entry.trim())
  if (m === null) throw configError(file, field, `"${entry}" is not "host:port"`)
  return { host: m[1]!, port: Number(m[2]), extra: m[3] ?? '' }
}

/** Reads one pool of an mcrouter config (`poolName`, or the only pool) as a memdrain pool. */
export function importMcrouter(text: string, file: string, poolName?: string): ImportedPool {
  const root = parseJsonc(text, file)
  const name = pickPoolName(poolNames(root), poolName, file)
  const { pool: def, uses } = analyse(root, name, file)
  const notes: string[] = []
  const where = `pools.${name}`
  if (!Array.isArray(def.servers) || def.servers.length === 0) throw configError(file, `${where}.servers`, 'must be a non-empty list of "host:port"')
  const servers = def.servers.map((e, i) => parseServer(e, `${where}.servers[${i}]`, file))
  const extras = servers.filter((s) => s.extra !== '')
  if (extras.length > 0) notes.push(`${where}.servers: the protocol/security parts (${[...new Set(extras.map((s) => s.extra.slice(1)))].join(', ')}) are not in the pool file; \`pool export --to mcrouter\` keeps them from the original file`)

  let use: HashUse
  if (uses.length === 0) {
    use = { func: def.weights !== undefined ? 'WeightedCh3' : 'Ch3', weights: def.weights, weightsPath: [...def.path, 'weights'], at: where }
    notes.push(`no route uses pool "${name}": placed as a plain "PoolRoute|${name}" would (${use.func})`)
  } else {
    const distinct = new Map(uses.map((u) => [JSON.stringify([u.func, u.salt, u.weights, u.bucketize, u.shardSplits]), u]))
    if (distinct.size > 1) {
      throw configUnsupported(file, name, `routes hash pool "${name}" in different ways (${[...distinct.values()].map((u) => `${u.func} at ${u.at}`).join('; ')}): a key has more than one owner`)
    }
    use = uses[0]!
  }
  if (use.bucketize === true) throw configUnsupported(file, use.at, 'bucketize: true hashes a bucket id, not the key; not supported yet')
  if (use.shardSplits === true) throw configUnsupported(file, use.at, 'shard_splits spreads some shards over several servers; not supported yet')
  if (use.salt !== undefined && use.salt !== '') throw configUnsupported(file, use.at, `hash salt "${use.salt}": mcrouter hashes key + salt, and no memdrain strategy does yet`)
  const strategy = STRATEGY[use.func]
  if (strategy === undefined || !isHashName(strategy)) {
    throw configUnsupported(file, use.at, `not supported yet: mcrouter hash_func "${use.func}"${strategy !== undefined ? ` (strategy ${strategy})` : ''}`, [
      'memdrain reproduces Ch3 (the default), Crc32 and WeightedCh3; run `memdrain hashes`.',
    ])
  }
  let weights: number[] | undefined
  if (use.func === 'WeightedCh3') {
    if (!Array.isArray(use.weights) || use.weights.some((w) => typeof w !== 'number' || w < 0 || w > 1)) {
      throw configError(file, use.weightsPath !== undefined ? pathText(use.weightsPath) : use.at, 'WeightedCh3 needs "weights": a list of numbers in [0, 1], one per server')
    }
    weights = servers.map((_, i) => (use.weights as number[])[i] ?? 0.5)
    if (use.weights.length < servers.length) notes.push(`${use.at}: ${servers.length - use.weights.length} weight(s) missing; mcrouter uses 0.5 for them, and so does the pool file`)
    if (use.weights.length > servers.length) notes.push(`${use.at}: ${use.weights.length - servers.length} weight(s) beyond the servers; mcrouter ignores them, and so does the pool file`)
  }
  notes.push('keys are placed by their routing key: a "/region/cluster/" prefix is dropped and nothing from the first "|#|" is hashed')
  const docPool = {
    hash: strategy,
    servers: servers.map((s, i) => ({ address: `${s.host}:${s.port}`, ...(weights !== undefined ? { weight: weights[i] } : {}) })),
    origin: { format: 'mcrouter', file, pool: name },
  }
  return { pool: validatePool(docPool, file), poolName: name, notes }
}

const STRATEGY_FUNC: Readonly<Record<string, string>> = Object.fromEntries(Object.entries(STRATEGY).map(([f, s]) => [s, f]))

/**
 * The pool as an mcrouter config. With a template (the original file), only the pool's `servers`
 * and, for WeightedCh3, the weights where the file keeps them change; a server keeps its
 * protocol/security suffix from the template.
 */
export function exportMcrouter(pool: Pool, opts: { poolName: string; template?: { text: string; file: string } | undefined }): string {
  const func = STRATEGY_FUNC[pool.hash]
  if (func === undefined) {
    throw configUnsupported('pool', 'hash', `${pool.hash} is not an mcrouter strategy: mcrouter could not place keys as the applications do`, ['Export to `servers` or to the format of the client the pool describes.'])
  }
  if (pool.replicas !== 1) throw configUnsupported('pool', 'replicas', `is ${pool.replicas}: a PoolRoute keeps one copy of each key`)
  const active = activeServers(pool)
  const weights = func === 'WeightedCh3' ? active.map((s) => s.weight) : undefined
  if (opts.template === undefined) {
    const poolDef: JsonObject = { servers: active.map((s) => s.address), ...(weights !== undefined ? { weights } : {}) }
    const route = func === 'Ch3' || func === 'WeightedCh3' ? `PoolRoute|${opts.poolName}` : { type: 'PoolRoute', pool: opts.poolName, hash: { hash_func: func } }
    return JSON.stringify({ pools: { [opts.poolName]: poolDef }, route }, null, 2) + '\n'
  }
  const { text, file } = opts.template
  const root = parseJsonc(text, file)
  const { pool: def, uses } = analyse(root, opts.poolName, file)
  const suffix = new Map<string, string>()
  if (Array.isArray(def.servers)) {
    def.servers.forEach((e, i) => {
      const s = parseServer(e, `pools.${opts.poolName}.servers[${i}]`, file)
      suffix.set(`${s.host}:${s.port}`, s.extra)
    })
  }
  const fmt = { formattingOptions: { insertSpaces: true, tabSize: 2 } }
  let out = applyEdits(text, modify(text, [...def.path, 'servers'], active.map((s) => `${s.address}${suffix.get(s.address) ?? ''}`), fmt))
  if (weights !== undefined) {
    const paths = new Map<string, JSONPath>()
    for (const u of uses) if (u.weightsPath !== undefined) paths.set(JSON.stringify(u.weightsPath), u.weightsPath)
    if (paths.size === 0) paths.set('pool', [...def.path, 'weights'])
    for (const p of paths.values()) out = applyEdits(out, modify(out, p, weights, fmt))
  }
  return out
}
