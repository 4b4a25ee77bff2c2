import { MemdrainError, ExitCode } from '../errors.js'
import { HASH_NAMES, isHashName, type HashName } from '../placement/registry.js'
import { parseAddress } from '../protocol/address.js'
import { CLIENT_KINDS, SERVER_STATES, type ClientKind, type Pool, type PoolServer, type RebalanceRecord, type SourceRecord, type HandoffPhase, HANDOFF_PHASES, type ServerState, type TransitionRecord } from './model.js'

const TOP_FIELDS = new Set(['hash', 'replicas', 'clients', 'servers', 'rebalance'])
const SERVER_FIELDS = new Set(['address', 'weight', 'name', 'state', 'transition'])
const NAMED_HASHES: ReadonlySet<string> = new Set(['twemproxy-ketama-md5-named', 'twemproxy-modula-fnv1a-64-named'])

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

/** Parse and validate a pool document (the JSON text of a pool file or an etcd value). */
export function parsePoolText(text: string, source: string): Pool {
  let doc: unknown
  try {
    doc = JSON.parse(text)
  } catch (err) {
    throw poolError(source, '(document)', `is not valid JSON (${(err as Error).message})`, [
      `Check ${source} with \`node -e 'JSON.parse(require("fs").readFileSync("${source}","utf8"))'\` or rewrite it from README's example.`,
    ])
  }
  return validatePool(doc, source)
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
    const server = validateServer(raw, source, `servers[${i}]`, NAMED_HASHES.has(hash))
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
  const active = servers.filter((s) => s.state === 'active').length
  if (active === 0) throw poolError(source, 'servers', 'no server is "active": at least one must own keys')
  const replicas = validateReplicas(doc.replicas, source, active)
  if (doc.rebalance === undefined) return { hash, replicas, clients, servers }
  return { hash, replicas, clients, servers, rebalance: validateRebalance(doc.rebalance, source) }
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
  if (!isHashName(value)) throw poolError(source, field, `unknown hash "${value}"`, hashSuggestions(value))
  return value
}

function hashSuggestions(value?: string): string[] {
  const close = value === undefined ? [] : HASH_NAMES.filter((n) => n.includes(value) || value.includes(n))
  return [
    ...(close.length > 0 ? [`Did you mean ${close.join(' or ')}?`] : []),
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
    throw poolError(source, 'replicas', `must be a whole number ≥ 1, got ${JSON.stringify(value)}`)
  }
  if (value > active) {
    throw poolError(source, 'replicas', `is ${value} but only ${active} server(s) are active: a key cannot have more copies than servers`)
  }
  return value
}

function validateServer(raw: unknown, source: string, field: string, needsName: boolean): PoolServer {
  const obj: Record<string, unknown> = typeof raw === 'string' ? { address: raw } : isObject(raw) ? raw : {}
  if (!isObject(raw) && typeof raw !== 'string') throw poolError(source, field, 'must be an object like {"address": "10.0.0.1:11211"}')
  for (const key of Object.keys(obj)) {
    if (!SERVER_FIELDS.has(key)) throw poolError(source, `${field}.${key}`, `unknown field (expected one of: ${[...SERVER_FIELDS].join(', ')})`)
  }
  if (typeof obj.address !== 'string' || obj.address.trim() === '') {
    throw poolError(source, `${field}.address`, 'is required, as "host:port"')
  }
  let host: string
  let port: number
  try {
    ;({ host, port } = parseAddress(obj.address))
  } catch (err) {
    throw poolError(source, `${field}.address`, (err as Error).message)
  }
  const weight = obj.weight ?? 1
  if (typeof weight !== 'number' || !Number.isInteger(weight) || weight <= 0) {
    throw poolError(source, `${field}.weight`, `must be a whole number > 0, got ${JSON.stringify(obj.weight)}`)
  }
  let name: string | undefined
  if (obj.name !== undefined) {
    if (typeof obj.name !== 'string' || obj.name === '' || /\s/.test(obj.name)) {
      throw poolError(source, `${field}.name`, 'must be a non-empty string without spaces')
    }
    name = obj.name
  } else if (needsName) {
    throw poolError(source, `${field}.name`, 'is required by this hash: twemproxy hashes server names', [
      'Copy each server\'s name from the twemproxy config (`host:port:weight name`).',
    ])
  }
  const state = obj.state ?? 'active'
  if (typeof state !== 'string' || !(SERVER_STATES as readonly string[]).includes(state)) {
    throw poolError(source, `${field}.state`, `must be one of ${SERVER_STATES.map((s) => `"${s}"`).join(', ')}, got ${JSON.stringify(obj.state)}`)
  }
  const transition = obj.transition === undefined ? undefined : validateTransition(obj.transition, source, `${field}.transition`)
  return { address: obj.address, host, port, weight, name, state: state as ServerState, transition }
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
