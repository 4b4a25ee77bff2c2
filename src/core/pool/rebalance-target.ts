import { MemdrainError, ExitCode } from '../errors.js'
import { activeServers, findServer, placementFields, poolToDocument, samePlacementServer, type Pool } from './model.js'
import { poolPlacement } from './placement.js'
import type { HashName } from '../placement/registry.js'
import { validatePool, weightProblem } from './validate.js'

/** How the operator describes the new pool: a whole pool (`--to`), or edits of the current one. */
export interface PoolEdits {
  /** The new pool, already read and validated (`--to FILE`). */
  to?: { pool: Pool; location: string } | undefined
  /** `ADDR` or `ADDR=WEIGHT`. */
  add: readonly string[]
  remove: readonly string[]
  /** `ADDR=WEIGHT`. */
  weight: readonly string[]
}

export function hasEdits(e: PoolEdits): boolean {
  return e.to !== undefined || e.add.length > 0 || e.remove.length > 0 || e.weight.length > 0
}

function usage(message: string, suggestions: string[] = []): MemdrainError {
  return new MemdrainError(message, { code: 'USAGE', exitCode: ExitCode.usage, suggestions })
}

function splitWeight(text: string, flag: string, required: boolean, hash: HashName): { address: string; weight?: number } {
  const eq = text.lastIndexOf('=')
  if (eq < 0) {
    if (required) throw usage(`--${flag} needs ADDR=WEIGHT, got "${text}"`, [`For example --${flag} 10.0.0.4:11211=2`])
    return { address: text.trim() }
  }
  const w = Number(text.slice(eq + 1))
  const problem = weightProblem(hash, w)
  if (problem !== undefined) throw usage(`--${flag} ${text}: the weight ${problem}`)
  return { address: text.slice(0, eq).trim(), weight: w }
}

/**
 * The new pool: `--to`'s pool, or `base` with the edits applied. Servers leaving the pool stay
 * listed as `deactivating` (they are sources until purged); servers joining are `active`. The
 * result is validated like a pool file, so a mistake is named by field.
 */
export function targetPool(base: Pool, edits: PoolEdits, location: string): Pool {
  if (edits.to !== undefined && (edits.add.length > 0 || edits.remove.length > 0 || edits.weight.length > 0)) {
    throw usage('--to gives the whole new pool: do not combine it with --add, --remove or --weight', ['Edit the file given to --to instead.'])
  }
  const baseActive = activeServers(base)
  let doc: Record<string, unknown>
  let label: string
  if (edits.to !== undefined) {
    const next = edits.to.pool
    if (next.rebalance !== undefined) throw usage(`${edits.to.location} holds a rebalance record: give a plain pool file to --to`)
    const nextDoc = poolToDocument(next)
    const servers = nextDoc.servers as Record<string, unknown>[]
    for (const s of baseActive) {
      if (findServer(next, s.address) === undefined) servers.push({ ...placementFields(s), state: 'deactivating' })
    }
    doc = nextDoc
    label = edits.to.location
  } else {
    const servers: Record<string, unknown>[] = base.servers.map((s) => ({ ...placementFields(s), state: s.state as string }))
    for (const r of edits.remove) {
      const s = findServer(base, r)
      if (s === undefined || s.state !== 'active') {
        throw usage(`--remove ${r}: not an active server of ${location}`, [`Active servers: ${baseActive.map((x) => x.address).join(', ')}`])
      }
      servers.find((x) => x.address === s.address)!.state = 'deactivating'
    }
    for (const w of edits.weight) {
      const { address, weight } = splitWeight(w, 'weight', true, base.hash)
      const s = findServer(base, address)
      if (s === undefined || s.state !== 'active' || edits.remove.includes(address)) throw usage(`--weight ${w}: ${address} is not an active server that stays in the pool`)
      servers.find((x) => x.address === s.address)!.weight = weight!
    }
    for (const a of edits.add) {
      const { address, weight } = splitWeight(a, 'add', false, base.hash)
      const s = findServer(base, address)
      if (s !== undefined && s.state !== 'removed') throw usage(`--add ${a}: ${address} is already in the pool (${s.state})`, ['Use --weight to change its weight.'])
      if (s !== undefined) {
        // A server removed earlier comes back: in its old place (modulo placements depend on order).
        const x = servers.find((y) => y.address === s.address)!
        x.state = 'active'
        x.weight = weight ?? 1
      } else {
        servers.push({ address, weight: weight ?? 1, state: 'active' })
      }
    }
    doc = { ...poolToDocument(base), servers }
    delete doc.rebalance
    label = `${location} with the edits`
  }
  return validatePool(doc, label)
}

/** Whether two pools place every key on the same servers (same hash, replicas and active servers in order). */
export function placesLike(a: Pool, b: Pool): boolean {
  const x = activeServers(a)
  const y = activeServers(b)
  if (a.hash !== b.hash || Math.min(a.replicas, x.length) !== Math.min(b.replicas, y.length) || x.length !== y.length) return false
  return x.every((s, i) => samePlacementServer(s, y[i]!))
}

/**
 * The share of keys whose owner changes from `from` to `to`, estimated from placement alone on
 * synthetic keys (no server is asked): the figure consistent hashing keeps near 1/n and modulo
 * does not.
 */
export function estimateMovedFraction(from: Pool, to: Pool, samples = 50_000): number {
  const a = poolPlacement(from)
  const b = poolPlacement(to)
  const key = Buffer.alloc(40)
  let moved = 0
  for (let i = 0; i < samples; i++) {
    const k = key.subarray(0, key.write(`memdrain:rebalance:${i}`, 0, 'latin1'))
    if (a.servers[a.placement.owner(k)]!.address !== b.servers[b.placement.owner(k)]!.address) moved++
  }
  return moved / samples
}
