import { Flags } from '@oclif/core'
import { setMaxListeners } from 'node:events'
import { usageError } from './base-command.js'
import { JOB_DEFAULTS } from '../core/defaults.js'

/** Flags shared by the jobs that move keys (drain, rebalance, warm, mirror), with their parsing. */

const SIZE = /^(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?$/i
export function parseSize(text: string, flag: string): number {
  const m = SIZE.exec(text.trim())
  if (m === null) throw usageError(`--${flag} must be a size like 50MB, 512KiB or 1048576, got "${text}"`)
  const unit = (m[2] ?? '').toLowerCase().replace(/i?b$/, '')
  const mult = unit === '' ? 1 : unit === 'k' ? 1024 : unit === 'm' ? 1024 ** 2 : unit === 'g' ? 1024 ** 3 : 1024 ** 4
  // Up, never down: "0.4" must not become 0 (which means "no limit" for a rate).
  return Math.ceil(Number(m[1]) * mult)
}

/** The smallest --bandwidth: below it a batch of keys waits minutes, and the job looks hung. */
export const MIN_BANDWIDTH = 1024

/** --bandwidth: 0 (unthrottled) or at least MIN_BANDWIDTH bytes a second. */
export function parseBandwidth(text: string): number {
  const bytes = parseSize(text, 'bandwidth')
  if (bytes > 0 && bytes < MIN_BANDWIDTH) {
    throw usageError(`--bandwidth "${text}" is under 1KiB a second (a number without a unit is bytes), the smallest memdrain takes: a batch of keys would wait minutes`, [
      `Give a unit, e.g. --bandwidth ${text.trim()}MB, or 0 for no limit.`,
    ])
  }
  return bytes
}

export function parseRatio(text: string, flag: string): number {
  const v = Number(text)
  if (text.trim() === '' || !Number.isFinite(v) || v < 0 || v > 1) throw usageError(`--${flag} must be a number from 0 to 1, got "${text}"`)
  return v
}

export function parseNonNegativeInt(text: string, flag: string): number {
  if (!/^\d+$/.test(text.trim())) throw usageError(`--${flag} must be a whole number ≥ 0, got "${text}"`)
  return Number(text)
}

/** "10%" → 0.1 (fraction of the destination's memory), "64MB" → bytes. */
export function parseMinFree(text: string): number {
  const t = text.trim()
  if (t.endsWith('%')) {
    const v = Number(t.slice(0, -1))
    if (!Number.isFinite(v) || v < 0 || v >= 100) throw usageError(`--min-free as a percentage must be from 0% to 99%, got "${text}"`)
    return v / 100
  }
  const bytes = parseSize(t, 'min-free')
  return bytes === 0 ? 0 : Math.max(1, bytes)
}

export const throttleFlags = {
  rate: Flags.string({ description: 'Keys per second at most (0 = unthrottled).', default: String(JOB_DEFAULTS.rate), helpGroup: 'THROTTLE' }),
  bandwidth: Flags.string({ description: 'Bytes per second at most, e.g. 50MB (0 = unthrottled).', default: `${JOB_DEFAULTS.bandwidth / 1024 / 1024}MB`, helpGroup: 'THROTTLE' }),
  'min-free': Flags.string({ description: 'Stop sending to a destination whose free memory falls under this (bytes, or a percentage of its memory).', default: `${JOB_DEFAULTS.minFree * 100}%`, helpGroup: 'THROTTLE' }),
  'allow-evictions': Flags.boolean({ description: 'Move even when the preflight says destinations lack room (they evict their coldest keys).', helpGroup: 'THROTTLE' }),
  'min-ttl': Flags.string({ description: 'Skip keys that expire within this many seconds.', default: String(JOB_DEFAULTS.minTtl), helpGroup: 'THROTTLE' }),
  order: Flags.string({ description: 'hot-first: most recently used keys first; dump: the dump\'s order.', options: ['hot-first', 'dump'], default: 'hot-first' }),
  'spool-dir': Flags.string({ description: 'Directory for the key spool and the copy journal, owned by this user and writable by no one else (default: $XDG_STATE_HOME/memdrain, else ~/.local/state/memdrain).' }),
}

/** --metrics-file: every job (drain, rebalance, warm, mirror) exports its figures for Prometheus. */
export const metricsFlags = {
  'metrics-file': Flags.string({
    description: 'Write Prometheus metrics (text format) to this file every --metrics-interval seconds and at the end, atomically: point it into node_exporter\'s textfile directory (a name ending .prom).',
    helpGroup: 'OUTPUT',
  }),
  'metrics-interval': Flags.integer({ description: 'Seconds between two writes of --metrics-file.', default: 5, min: 1, helpGroup: 'OUTPUT' }),
}

export interface ThrottleValues {
  rate: number
  bandwidth: number
  minFree: number
  minTtl: number
}

export function parseThrottle(flags: { rate: string; bandwidth: string; 'min-free': string; 'min-ttl': string }): ThrottleValues {
  return {
    rate: parseNonNegativeInt(flags.rate, 'rate'),
    bandwidth: parseBandwidth(flags.bandwidth),
    minFree: parseMinFree(flags['min-free']),
    minTtl: parseNonNegativeInt(flags['min-ttl'], 'min-ttl'),
  }
}

/** Every throttle flag parsed, in the shape the jobs take (JobKnobs without the signal). */
export function parseJobFlags(flags: Parameters<typeof parseThrottle>[0] & { 'allow-evictions': boolean; order: string; 'spool-dir'?: string | undefined }): ThrottleValues & {
  allowEvictions: boolean
  order: 'hot-first' | 'dump'
  spoolDir: string | undefined
} {
  return { ...parseThrottle(flags), allowEvictions: flags['allow-evictions'], order: flags.order as 'hot-first' | 'dump', spoolDir: flags['spool-dir'] }
}

/**
 * SIGINT/SIGTERM: stop reading, finish what is in flight, save, exit 69. A second signal exits
 * at once. `report` (the job's progress) prints the notice above its bars, and is torn down
 * before a second signal exits, so no bar is left on screen.
 */
export function interruptOnSignals(report?: { log(line: string): void; abandon(): void }): { signal: AbortSignal; dispose: () => void } {
  const ac = new AbortController()
  // One signal stops the whole job: every source's dump and waits listen to it, so its listeners
  // grow with the sources (a rebalance of a 12-server pool has 12 dumps running). Node warns
  // past 10 listeners as if it were a leak; the throttle keeps its own to one waiter per bucket.
  setMaxListeners(256, ac.signal)
  let count = 0
  const handler = (sig: NodeJS.Signals): void => {
    count++
    if (count > 1) {
      report?.abandon()
      process.exit(69)
    }
    const notice = `${sig}: finishing the batches in flight and saving state (send again to quit at once)…`
    if (report !== undefined) report.log(notice)
    else process.stderr.write(`\n${notice}\n`)
    ac.abort()
  }
  process.on('SIGINT', handler)
  process.on('SIGTERM', handler)
  return {
    signal: ac.signal,
    dispose: () => {
      process.off('SIGINT', handler)
      process.off('SIGTERM', handler)
    },
  }
}

/** Flags of the jobs with a hand-off (drain, rebalance); `what` names what is purged. */
export function handoffFlags(what: string) {
  return {
    handoff: Flags.string({ description: 'move: delete from the old owner as keys move (pool-aware clients). copy: copy, switch, catch up (static clients).', options: ['move', 'copy'] }),
    threshold: Flags.string({ description: `Transitioned ratio (moved + in place) / live keys at which ${what} purged and removed.`, default: String(JOB_DEFAULTS.threshold) }),
    purge: Flags.boolean({ description: `Flush ${what} once the threshold is reached (--no-purge keeps the items).`, default: true, allowNo: true }),
    'client-grace': Flags.integer({ description: 'Move hand-off: seconds between changing the pool file and moving the first key, so pool-aware clients (which re-read the pool every 2 s) see it first.', default: JOB_DEFAULTS.clientGraceSeconds, min: 0 }),
    'dry-run': Flags.boolean({ description: 'Only plan: keys and bytes per destination, room check, estimated duration. Writes nothing.' }),
    force: Flags.boolean({ description: 'Allow --handoff move on a pool whose clients are static: they keep reading the old owner, and serve stale or deleted values after the move.' }),
    yes: Flags.boolean({ char: 'y', description: 'Do not ask for confirmation (required without a terminal).' }),
  }
}

interface HandoffFlagValues {
  handoff?: string | undefined
  threshold: string
  purge: boolean
  'client-grace': number
  'dry-run': boolean
  force?: boolean | undefined
  rate: string
  bandwidth: string
  'min-free': string
  'min-ttl': string
  'allow-evictions': boolean
  order: string
  'spool-dir'?: string | undefined
}

/** The options every hand-off job takes, from its flags. */
export function handoffJobOptions(flags: HandoffFlagValues) {
  return {
    handoff: flags.handoff as 'move' | 'copy' | undefined,
    threshold: parseRatio(flags.threshold, 'threshold'),
    purge: flags.purge,
    ...parseThrottle(flags),
    allowEvictions: flags['allow-evictions'],
    order: flags.order as 'hot-first' | 'dump',
    spoolDir: flags['spool-dir'],
    dryRun: flags['dry-run'],
    clientGraceSeconds: flags['client-grace'],
    force: flags.force === true,
  }
}
