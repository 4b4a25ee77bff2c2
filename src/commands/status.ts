import { Flags } from '@oclif/core'
import { BaseCommand, EXIT_CODES_HELP, poolFlags, poolStoreFromFlags } from '../cli/base-command.js'
import { ExitCode, MemdrainError } from '../core/errors.js'
import { probeServer, type ServerStatus } from '../core/inspect/server-status.js'
import { estimateShares, poolPlacement } from '../core/pool/placement.js'
import type { TransitionRecord } from '../core/pool/model.js'
import { sumStoreMigrations } from '../core/pool/client-reports.js'
import { transitionedCounts, transitionedRatio } from '../core/pool/transition.js'
import { changeInProgress, type ChangeInProgress } from '../core/pool/change-status.js'
import { describeChangeInProgress } from '../ui/plan-summary.js'
import { formatBytes, formatCount, formatDuration, formatPercent } from '../ui/format.js'
import { paint, renderTable } from '../ui/style.js'

export interface StatusResult {
  pool: string
  hash: string
  replicas: number
  clients: string
  servers: StatusServer[]
  /** The drain or rebalance in progress, from the pool record: servers, hand-off, phase, how to resume or go back. */
  change?: ChangeInProgress | undefined
}

export type StatusServer = ServerStatus & {
  transition?: TransitionRecord
  /**
   * A deactivating server: keys moved off it by pool-aware clients (memdrain's library) during
   * its current transition, summed from their reports beside the pool file (absent for --servers).
   */
  movedByClients?: number
}

export default class Status extends BaseCommand<StatusResult> {
  static override summary = 'Show every server of the pool: state, reachability, version, items, memory, evictions, hit ratio.'
  static override description = `Unreachable servers, servers too old for memdrain (< 1.6.10) and servers whose key dumps are
disabled are reported as warnings (exit 0); with --strict they make the command exit 3.

${EXIT_CODES_HELP}`
  static override examples = ['<%= config.bin %> status', '<%= config.bin %> status --pool /etc/memdrain/pool.json --json', '<%= config.bin %> status --strict']
  static override flags = {
    ...poolFlags,
    strict: Flags.boolean({ description: 'Exit 3 when any server that is not removed is unreachable, too old, or cannot be dumped.' }),
    timeout: Flags.integer({ description: 'Connect and request timeout per server, in milliseconds.', default: 2000, min: 1 }),
  }

  async run(): Promise<StatusResult> {
    const { flags } = await this.parse(Status)
    const store = poolStoreFromFlags(flags)
    const { pool } = await store.load()
    // Keys pool-aware application clients moved off servers in transition (their reports, summed).
    const byClients = await sumStoreMigrations(store, pool).catch(() => undefined)
    const shares = estimateShares(poolPlacement(pool))
    const servers = await Promise.all(
      pool.servers.map(async (s) => {
        if (s.state === 'removed') return { address: s.address, state: s.state, weight: s.weight, reachable: false, warnings: [], ...(s.transition ? { transition: s.transition } : {}) } as ServerStatus
        const st: StatusServer = await probeServer(s, { timeoutMs: flags.timeout })
        const share = shares.get(s.address)
        if (share !== undefined) {
          st.share = share.keys
          if (pool.replicas > 1) {
            st.primaryShare = share.primary
            st.copyShare = share.copies
          }
        }
        if (s.transition !== undefined) st.transition = s.transition
        if (s.state === 'deactivating' && byClients !== undefined) {
          // The reports are newer than the record's figure (written by the drain as it saves).
          st.movedByClients = Math.max(byClients.get(s.address) ?? 0, s.transition?.movedByClients ?? 0)
        }
        return st
      }),
    )
    const problems: string[] = []
    for (const s of servers) for (const w of s.warnings) {
      problems.push(`${s.address}: ${w}`)
      this.note(`${s.address}: ${w}`)
    }
    const change = changeInProgress(pool)
    const result: StatusResult = { pool: store.location, hash: pool.hash, replicas: pool.replicas, clients: pool.clients, servers, ...(change !== undefined ? { change } : {}) }
    if (!this.jsonEnabled()) this.render(result)
    if (flags.strict && problems.length > 0) {
      throw new MemdrainError(`${problems.length} problem(s) in the pool`, {
        code: 'POOL_UNHEALTHY',
        exitCode: ExitCode.precondition,
        suggestions: problems,
        data: result,
      })
    }
    return result
  }

  private render(r: StatusResult): void {
    const replicated = r.replicas > 1
    this.log(`${paint.bold('pool')} ${r.pool}  ${paint.bold('hash')} ${r.hash}  ${paint.bold('replicas')} ${r.replicas}  ${paint.bold('clients')} ${r.clients}`)
    const stateColor = (s: ServerStatus): string =>
      s.state === 'active' ? paint.ok(s.state) : s.state === 'deactivating' ? paint.warn(s.state) : paint.dim(s.state)
    const rows = r.servers.map((s) => [
      s.name === undefined ? s.address : `${s.address} (${s.name})`,
      stateColor(s),
      s.state === 'removed' ? '-' : s.reachable ? (s.error ? paint.warn('yes') : paint.ok('yes')) : paint.bad('no'),
      s.version ?? '-',
      formatCount(s.items),
      formatBytes(s.bytes),
      formatBytes(s.limitBytes),
      formatBytes(s.freeBytes),
      formatCount(s.evictions),
      s.hitRatio === null ? '-' : formatPercent(s.hitRatio),
      formatPercent(s.share),
      ...(replicated ? [formatPercent(s.primaryShare), formatPercent(s.copyShare)] : []),
      formatDuration(s.uptimeSeconds),
    ])
    // With replicas n, SHARE is the share of keys whose chain includes the server (adding up to n).
    const shareHeads = replicated ? ['SHARE', 'PRIMARY', 'COPIES'] : ['SHARE']
    const heads = ['SERVER', 'STATE', 'UP', 'VERSION', 'ITEMS', 'USED', 'LIMIT', 'FREE', 'EVICTIONS', 'HITS', ...shareHeads, 'UPTIME']
    this.log(renderTable(heads, rows, new Set(heads.map((_, i) => i).filter((i) => i >= 4))))
    if (replicated) this.log(paint.dim(`replicas ${r.replicas}: SHARE = keys whose chain includes the server, PRIMARY = keys it owns, COPIES = its part of all ${r.replicas} copies of each key`))
    for (const s of r.servers) {
      const byClients = s.movedByClients === undefined || s.movedByClients === 0 ? '' : `, ${formatCount(s.movedByClients)} moved by clients`
      const t = s.transition
      if (t === undefined) {
        if (byClients !== '') this.log(`${s.address}: deactivating, no drain record${byClients}`)
        continue
      }
      if (t.sources !== undefined && t.finishedAt === undefined) continue // a modulo drain: the change line below tells it over every source
      const current = { ...t, movedByClients: s.movedByClients ?? t.movedByClients }
      const { done, live } = transitionedCounts(current)
      this.log(
        `${s.address}: ${t.handoff} hand-off since ${t.startedAt}: ${formatCount(done)} of ${formatCount(live)} live keys transitioned${byClients} (${formatPercent(transitionedRatio(current))}, threshold ${formatPercent(t.threshold)}), ${formatCount(t.failed)} failed${t.finishedAt ? `, finished ${t.finishedAt}` : ''}`,
      )
    }
    if (r.change !== undefined) this.log(paint.warn(describeChangeInProgress(r.change)))
  }
}
