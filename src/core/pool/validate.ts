import { MemdrainError, ExitCode } from '../errors.js'
import { isIP } from 'node:net'
import { fractionalWeights, HASH_INFO, HASH_NAMES, isHashName, refusedHash, requiredServerField, type HashName } from '../placement/registry.js'
import { parseAddress } from '../protocol/address.js'
import path from 'node:path'
import { weightLimit } from '../placement/weight-limits.js'
import { addressKey, CLIENT_KINDS, CONFIG_FORMATS, SERVER_STATES, type ClientKind, type ConfigFormat, type PoolOrigin, type Pool, type PoolServer, type RebalanceRecord, type SourceRecord, type HandoffPhase, HANDOFF_PHASES, type ServerState, type TransitionRecord } from './model.js'

const TOP_FIELDS = new Set(['hash', 'replicas', 'clients', 'servers', 'rebalance', 'origin'])
const SERVER_FIELDS = new Set(['address', 'weight', 'name', 'hostname', 'resolved', 'state', 'transition'])

/** A pool-file problem: always names the source and the field, and is a precondition failure (exit 3). */
export function poolError(source: string, field: string, problem: string, suggestions: string[] = []): MemdrainError {
  return new MemdrainError(`${source}: ${field}: ${problem}`, {
    code: 'POOL_INVALID',
    exitCode: ExitCode.precondition,
    suggestions: suggestions.length > 0 ? suggestions : [`Fix ${field} in ${source} (see README, "The pool file").`],
  })
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** A Pool as validatePool returns it (servers carry their parsed host and port, and every default). */
function isValidatedPool(v: unknown): v is Pool {
  if (!isObject(v) || typeof v.replicas !== 'number' || typeof v.clients !== 'string' || !Array.isArray(v.servers)) return false
  return v.servers.every((s) => isObject(s) && typeof s.host === 'string' && typeof s.port === 'number' && typeof s.weight === 'number' && typeof s.state === 'string')
}

/**
 * A pool from a library caller: a validated Pool as it is, anything else (a plain object written
 * like a pool file: `{ hash, servers: [{ address }] }`) validated, with the defaults filled in.
 */
export function asPool(input: Pool | Record<string, unknown>, source: string): Pool {
  return isValidatedPool(input) ? input : validatePool(input, source)
}

/** A value as the user wrote it, for messages: JSON.stringify would show NaN, Infinity or undefined as null. */
export function shown(value: unknown): string {
  return typeof value === 'number' || value === undefined ? String(value) : JSON.stringify(value)
}

/** Parse and validate a pool document (the JSON text of a pool file or an etcd value). */
export function parsePoolText(text: string, source: string): Pool {
  let doc: unknown
  try {
    // A UTF-8 byte order mark (Windows editors write one) is not JSON, and invisible in a message: skip it.
    doc = JSON.parse(text.startsWith('\uFEFF') ? text.slice(1) : text)
  } catch (err) {
    throw poolError(source, '(document)', `is not valid JSON (${(err as Error).message})${invisibleIn(text)}`, [
      `Check ${source} with \`node -e 'JSON.parse(require("fs").readFileSync("${source}","utf8"))'\` or rewrite it from README's example.`,
    ])
  }
  return validatePool(doc, source)
}

/** Names the first character a message would not show (a no-break or zero-width space pasted from a web page). */
function invisibleIn(text: string): string {
  const m = /[\u00A0\u200B-\u200F\u2028\u2029\u2060\uFEFF]/.exec(text.startsWith('\uFEFF') ? text.slice(1) : text)
  if (m === null) return ''
  const before = text.slice(0, m.index + (text.startsWith('\uFEFF') ? 1 : 0))
  const line = before.split('\n').length
  return `; line ${line} holds an invisible character, U+${m[0].codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`
}

export function validatePool(doc: unknown, source: string): Pool {
  if (!isObject(doc)) throw poolError(source, '(document)', 'must be a JSON object with "hash" and "servers"')
  for (const key of Object.keys(doc)) {
    if (!TOP_FIELDS.has(key)) throw poolError(source, key, `unknown field (expected one of: ${[...TOP_FIELDS].join(', ')})`)
  }
  const hash = validateHash(doc.hash, source, 'hash')
  const clients = validateClients(doc.clients, source)
  if (!Array.isArray(doc.servers) || doc.servers.length === 0) {
    throw poolError(source, 'servers', 'must be a non-empty array of servers like {"address": "10.0.0.1:11211"}')
  }
  const servers: PoolServer[] = []
  const seenAddress = new Map<string, number>()
  const seenName = new Map<string, number>()
  doc.servers.forEach((raw: unknown, i: number) => {
    const server = validateServer(raw, source, `servers[${i}]`, hash)
    const key = `${server.host.toLowerCase()}:${server.port}`
    const dup = seenAddress.get(key)
    if (dup !== undefined) throw poolError(source, `servers[${i}].address`, `"${server.address}" duplicates servers[${dup}]`)
    seenAddress.set(key, i)
    if (server.name !== undefined) {
      const dupName = seenName.get(server.name)
      if (dupName !== undefined) throw poolError(source, `servers[${i}].name`, `"${server.name}" duplicates servers[${dupName}]`)
      seenName.set(server.name, i)
    }
    servers.push(server)
  })
  checkNames(servers, source)
  checkWeights(servers, hash, source)
  const active = servers.filter((s) => s.state === 'active').length
  if (active === 0) throw poolError(source, 'servers', 'no server is "active": at least one must own keys')
  const replicas = validateReplicas(doc.replicas, source, active)
  const origin = doc.origin === undefined ? {} : { origin: validateOrigin(doc.origin, source) }
  if (doc.rebalance === undefined) return { hash, replicas, clients, servers, ...origin }
  return { hash, replicas, clients, servers, rebalance: validateRebalance(doc.rebalance, source), ...origin }
}

function validateOrigin(raw: unknown, source: string): PoolOrigin {
  const hint = ['"origin" is written by `memdrain pool import`: {"format": "twemproxy" | "mcrouter", "file": "/abs/path", "pool": "name"}; delete it if the pool no longer comes from that file.']
  if (!isObject(raw)) throw poolError(source, 'origin', 'must be an object', hint)
  for (const key of Object.keys(raw)) {
    if (key !== 'format' && key !== 'file' && key !== 'pool') throw poolError(source, `origin.${key}`, 'unknown field (expected one of: format, file, pool)', hint)
  }
  if (typeof raw.format !== 'string' || !(CONFIG_FORMATS as readonly string[]).includes(raw.format)) {
    throw poolError(source, 'origin.format', `must be one of ${CONFIG_FORMATS.map((f) => `"${f}"`).join(', ')}`, hint)
  }
  if (typeof raw.file !== 'string' || !path.isAbsolute(raw.file)) throw poolError(source, 'origin.file', 'must be an absolute path', hint)
  if (typeof raw.pool !== 'string' || raw.pool === '') throw poolError(source, 'origin.pool', 'must be a non-empty string', hint)
  return { format: raw.format as ConfigFormat, file: raw.file, pool: raw.pool }
}

/**
 * A command argument names a server by address or by name: a name that is (or reads as) another
 * server's address would make `purge 127.0.0.1:B` flush the server named so. A server may be
 * named by its own address (twemproxy's default name).
 */
function checkNames(servers: readonly PoolServer[], source: string): void {
  servers.forEach((s, i) => {
    if (s.name === undefined) return
    const key = addressKey(s.name)
    const j = servers.findIndex((o, k) => k !== i && (o.address === s.name || (key !== undefined && addressKey(o.address) === key)))
    if (j >= 0) {
      throw poolError(source, `servers[${i}].name`, `"${s.name}" is the address of servers[${j}] (servers[${j}].address "${servers[j]!.address}"): a command naming either would be ambiguous`, [
        `Rename servers[${i}] (a name that is no address), or fix servers[${j}].address.`,
      ])
    }
  })
}

/** Weights every strategy can place in milliseconds (see placement/weight-limits.ts). */
function checkWeights(servers: readonly PoolServer[], hash: HashName, source: string): void {
  const limit = weightLimit(hash)
  const i = servers.findIndex((s) => s.weight > limit.perServer)
  if (i >= 0) throw poolError(source, `servers[${i}].weight`, `${servers[i]!.weight} is larger than ${limit.perServer}, the largest weight ${hash} takes`, [`Scale the weights down (only their ratios matter); see \`memdrain hashes\` for each strategy's limit.`])
  const total = servers.reduce((sum, s) => sum + s.weight, 0)
  if (limit.total !== undefined && total > limit.total) {
    throw poolError(source, 'servers', `the weights add up to ${total}; ${hash} takes at most ${limit.total} in all`, [`Scale the weights down (only their ratios matter); see \`memdrain hashes\` for each strategy's limit.`])
  }
}

function validateRebalance(raw: unknown, source: string): RebalanceRecord {
  const field = 'rebalance'
  const hint = ['It is written by memdrain rebalance; restore it from a backup, or delete "rebalance" to forget the rebalance in progress (then check the pool by hand).']
  if (!isObject(raw)) throw poolError(source, field, 'must be an object', hint)
  if (isObject(raw.previous) && raw.previous.rebalance !== undefined) throw poolError(source, `${field}.previous.rebalance`, 'a previous pool cannot hold a rebalance of its own', hint)
  const previous = validatePool(raw.previous, `${source} (${field}.previous)`)
  const handoff = raw.handoff ?? 'move'
  if (handoff !== 'move' && handoff !== 'copy') throw poolError(source, `${field}.handoff`, 'must be "move" or "copy"', hint)
  const threshold = raw.threshold ?? 0.95
  if (typeof threshold !== 'number' || threshold < 0 || threshold > 1) throw poolError(source, `${field}.threshold`, 'must be between 0 and 1', hint)
  const sources = validateSources(raw.sources ?? {}, source, `${field}.sources`, hint)
  const str = (k: string): string | undefined => (typeof raw[k] === 'string' ? (raw[k] as string) : undefined)
  const record: RebalanceRecord = {
    startedAt: str('startedAt') ?? new Date(0).toISOString(),
    updatedAt: str('updatedAt') ?? str('startedAt') ?? new Date(0).toISOString(),
    handoff,
    threshold,
    previous,
    sources,
  }
  addHandoffState(record, raw, source, field, hint)
  return record
}

const SOURCE_COUNTS = ['keysAtStart', 'moved', 'inPlace', 'failed', 'conflicts', 'passes', 'movedByClients'] as const

function validateSources(rawSources: unknown, source: string, field: string, hint: string[] = []): Record<string, SourceRecord> {
  if (!isObject(rawSources)) throw poolError(source, field, 'must map server addresses to their figures', hint)
  const sources: Record<string, SourceRecord> = {}
  for (const [address, r] of Object.entries(rawSources)) {
    const f = `${field}["${address}"]`
    if (!isObject(r)) throw poolError(source, f, 'must be an object', hint)
    for (const key of SOURCE_COUNTS) {
      const v = r[key] ?? 0
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw poolError(source, `${f}.${key}`, 'must be a whole number ≥ 0', hint)
    }
    const skipped = r.skipped ?? {}
    if (!isObject(skipped) || Object.values(skipped).some((v) => typeof v !== 'number')) throw poolError(source, `${f}.skipped`, 'must map reasons to counts', hint)
    const n = (k: (typeof SOURCE_COUNTS)[number]): number => (r[k] as number | undefined) ?? 0
    sources[address] = { keysAtStart: n('keysAtStart'), moved: n('moved'), inPlace: n('inPlace'), failed: n('failed'), conflicts: n('conflicts'), passes: n('passes'), skipped: skipped as Record<string, number> }
    if (n('movedByClients') > 0) sources[address]!.movedByClients = n('movedByClients')
    if (r.caughtUp === true) sources[address]!.caughtUp = true
  }
  return sources
}

/** The hand-off's phase, switch and count times; a record written before phases existed says only switchedAt. */
function addHandoffState(record: { phase?: HandoffPhase | undefined; switchedAt?: string | undefined; countedAt?: string | undefined; journalId?: string | undefined }, raw: Record<string, unknown>, source: string, field: string, hint: string[] = []): void {
  const str = (k: string): string | undefined => (typeof raw[k] === 'string' ? (raw[k] as string) : undefined)
  const switchedAt = str('switchedAt')
  if (switchedAt !== undefined) record.switchedAt = switchedAt
  const journalId = str('journalId')
  if (journalId !== undefined) record.journalId = journalId
  const countedAt = str('countedAt')
  if (countedAt !== undefined) record.countedAt = countedAt
  if (raw.phase !== undefined) {
    if (typeof raw.phase !== 'string' || !(HANDOFF_PHASES as readonly string[]).includes(raw.phase)) {
      throw poolError(source, `${field}.phase`, `must be one of ${HANDOFF_PHASES.map((p) => `"${p}"`).join(', ')}`, hint)
    }
    record.phase = raw.phase as HandoffPhase
  } else if (switchedAt !== undefined) {
    record.phase = 'switched'
  }
}

export function validateHash(value: unknown, source: string, field: string): HashName {
  if (typeof value !== 'string') throw poolError(source, field, 'is required: the placement strategy of the application client', hashSuggestions())
  const refused = refusedHash(value)
  if (refused !== undefined) throw poolError(source, field, `"${value}" cannot be reproduced: ${refused.reason}`, refused.suggestions)
  if (!isHashName(value)) throw poolError(source, field, `unknown hash "${value}"`, hashSuggestions(value))
  return value
}

const MAX_CLOSE = 6

function hashSuggestions(value?: string): string[] {
  const v = value?.toLowerCase().replaceAll('_', '-')
  const close = v === undefined ? [] : isHashName(v) ? [v] : HASH_NAMES.filter((n) => n.includes(v) || v.includes(n))
  const shown = close.slice(0, MAX_CLOSE).join(' or ') + (close.length > MAX_CLOSE ? ` (or ${close.length - MAX_CLOSE} more)` : '')
  return [
    ...(close.length > 0 ? [`Did you mean ${shown}?`] : []),
    'Run `memdrain hashes` to see every strategy and the client configuration it matches.',
  ]
}

function validateClients(value: unknown, source: string): ClientKind {
  if (value === undefined) return 'static'
  if (typeof value === 'string' && (CLIENT_KINDS as readonly string[]).includes(value)) return value as ClientKind
  throw poolError(source, 'clients', `must be one of ${CLIENT_KINDS.map((c) => `"${c}"`).join(', ')}`)
}

function validateReplicas(value: unknown, source: string, active: number): number {
  if (value === undefined) return 1
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    throw poolError(source, 'replicas', `must be a whole number ≥ 1, got ${shown(value)}`)
  }
  if (value > active) {
    throw poolError(source, 'replicas', `is ${value} but only ${active} server(s) are active: a key cannot have more copies than servers`)
  }
  return value
}

/**
 * What is wrong with `weight` for `hash`, or undefined when it is fine: a whole number > 0, or for
 * mcrouter-weighted-ch3 mcrouter's own weight, a number from 0 to 1.
 */
export function weightProblem(hash: HashName, weight: unknown): string | undefined {
  if (fractionalWeights(hash)) {
    return typeof weight === 'number' && weight >= 0 && weight <= 1
      ? undefined
      : `must be a number from 0 to 1 for ${hash} (the server's entry in mcrouter's "weights"), got ${shown(weight)}`
  }
  return typeof weight === 'number' && Number.isInteger(weight) && weight > 0 ? undefined : `must be a whole number > 0, got ${shown(weight)}`
}

function validateServer(raw: unknown, source: string, field: string, hash: HashName): PoolServer {
  const obj: Record<string, unknown> = typeof raw === 'string' ? { address: raw } : isObject(raw) ? raw : {}
  if (!isObject(raw) && typeof raw !== 'string') throw poolError(source, field, 'must be an object like {"address": "10.0.0.1:11211"}')
  for (const key of Object.keys(obj)) {
    if (!SERVER_FIELDS.has(key)) throw poolError(source, `${field}.${key}`, `unknown field (expected one of: ${[...SERVER_FIELDS].join(', ')})`)
  }
  if (typeof obj.address !== 'string' || obj.address.trim() === '') {
    throw poolError(source, `${field}.address`, 'is required, as "host:port"')
  }
  if (obj.address !== obj.address.trim()) {
    // Placement hashes the spelling: "10.0.0.1:11211 " is not what the application's client hashes.
    throw poolError(source, `${field}.address`, `${JSON.stringify(obj.address)} has whitespace around it`, [`Write it as ${JSON.stringify(obj.address.trim())}.`])
  }
  let host: string
  let port: number
  try {
    ;({ host, port } = parseAddress(obj.address))
  } catch (err) {
    throw poolError(source, `${field}.address`, (err as Error).message)
  }
  if (obj.weight === undefined && fractionalWeights(hash)) {
    // mcrouter itself would use 0.5 (and log an error): a silent default would place keys elsewhere.
    throw poolError(source, `${field}.weight`, `is required by ${hash}: copy the server's entry of mcrouter's "weights" (a number from 0 to 1)`, [
      `Fix ${field}.weight in ${source}; with --servers write ADDRESS=WEIGHT, e.g. 10.0.0.1:11211=0.5.`,
    ])
  }
  const weight = obj.weight ?? 1
  const badWeight = weightProblem(hash, weight)
  if (badWeight !== undefined || typeof weight !== 'number') throw poolError(source, `${field}.weight`, badWeight ?? 'must be a number')
  let name: string | undefined
  if (obj.name !== undefined) {
    if (typeof obj.name !== 'string' || obj.name === '' || /\s/.test(obj.name)) {
      throw poolError(source, `${field}.name`, 'must be a non-empty string without spaces')
    }
    name = obj.name
  } else if (HASH_INFO[hash].usesNames) {
    throw poolError(source, `${field}.name`, 'is required by this hash: twemproxy hashes server names', [
      'Copy each server\'s name from the twemproxy config (`host:port:weight name`).',
    ])
  }
  const hostname = optionalString(obj.hostname, source, `${field}.hostname`)
  const resolved = optionalString(obj.resolved, source, `${field}.resolved`)
  if (resolved !== undefined && isIP(resolved) === 0) throw poolError(source, `${field}.resolved`, `must be an IP address, got ${JSON.stringify(resolved)}`)
  const needed = requiredServerField(hash, host)
  if (needed !== undefined && (needed.field === 'hostname' ? hostname : resolved) === undefined) {
    throw poolError(source, `${field}.${needed.field}`, `is required by ${hash} for ${obj.address}: ${needed.why}`, [
      `Give it in a pool file: {"address": "${obj.address}", "${needed.field}": "..."} (--servers cannot carry it).`,
    ])
  }
  const state = obj.state ?? 'active'
  if (typeof state !== 'string' || !(SERVER_STATES as readonly string[]).includes(state)) {
    throw poolError(source, `${field}.state`, `must be one of ${SERVER_STATES.map((s) => `"${s}"`).join(', ')}, got ${shown(obj.state)}`)
  }
  const transition = obj.transition === undefined ? undefined : validateTransition(obj.transition, source, `${field}.transition`)
  return {
    address: obj.address,
    host,
    port,
    weight,
    name,
    ...(hostname === undefined ? {} : { hostname }),
    ...(resolved === undefined ? {} : { resolved }),
    state: state as ServerState,
    transition,
  }
}

function optionalString(value: unknown, source: string, field: string): string | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'string' || value === '' || /\s/.test(value)) throw poolError(source, field, 'must be a non-empty string without spaces')
  return value
}

const TRANSITION_COUNTS = ['keysAtStart', 'moved', 'inPlace', 'movedByClients', 'failed', 'conflicts', 'passes'] as const

function validateTransition(raw: unknown, source: string, field: string): TransitionRecord {
  if (!isObject(raw)) throw poolError(source, field, 'must be an object (written by memdrain; delete it to start the transition over)')
  for (const key of TRANSITION_COUNTS) {
    const v = raw[key] ?? 0
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw poolError(source, `${field}.${key}`, 'must be a whole number ≥ 0')
  }
  const threshold = raw.threshold ?? 0.95
  if (typeof threshold !== 'number' || threshold < 0 || threshold > 1) throw poolError(source, `${field}.threshold`, 'must be between 0 and 1')
  const skipped = raw.skipped ?? {}
  if (!isObject(skipped) || Object.values(skipped).some((v) => typeof v !== 'number')) {
    throw poolError(source, `${field}.skipped`, 'must map reasons to counts')
  }
  const handoff = raw.handoff ?? 'move'
  if (handoff !== 'move' && handoff !== 'copy') throw poolError(source, `${field}.handoff`, 'must be "move" or "copy"')
  const str = (k: string): string | undefined => (typeof raw[k] === 'string' ? (raw[k] as string) : undefined)
  const record: TransitionRecord = {
    startedAt: str('startedAt') ?? new Date(0).toISOString(),
    updatedAt: str('updatedAt') ?? str('startedAt') ?? new Date(0).toISOString(),
    keysAtStart: (raw.keysAtStart as number | undefined) ?? 0,
    moved: (raw.moved as number | undefined) ?? 0,
    inPlace: (raw.inPlace as number | undefined) ?? 0,
    movedByClients: (raw.movedByClients as number | undefined) ?? 0,
    skipped: skipped as Record<string, number>,
    failed: (raw.failed as number | undefined) ?? 0,
    conflicts: (raw.conflicts as number | undefined) ?? 0,
    threshold,
    handoff,
    passes: (raw.passes as number | undefined) ?? 0,
  }
  addHandoffState(record, raw, source, field)
  if (raw.sources !== undefined) record.sources = validateSources(raw.sources, source, `${field}.sources`)
  const finishedAt = str('finishedAt')
  if (finishedAt !== undefined) record.finishedAt = finishedAt
  return record
}
