import { BaseCommand, EXIT_CODES_HELP, poolFlags, poolStoreFromFlags } from '../../cli/base-command.js'
import type { LockInfo } from '../../core/pool/copy.js'
import { formatCount, formatPercent } from '../../ui/format.js'
import { paint, renderTable } from '../../ui/style.js'
import { describeChangeInProgress } from '../../ui/plan-summary.js'
import type { ChangeInProgress } from '../../core/pool/change-status.js'

export type PoolDocument = Record<string, unknown>

export interface ShowResult {
  location: string
  revision: string
  /** The job lock's holder (etcd pools), when a job holds it. */
  lock?: LockInfo | undefined
  /** The drain or rebalance in progress, from the pool record. */
  change?: ChangeInProgress | undefined
  pool: PoolDocument
}

export default class PoolShow extends BaseCommand<ShowResult> {
  static override summary = 'Show the pool (a file or etcd): servers, states, transitions, and who holds the lock.'
  static override description = `Reads and validates the pool named by --pool (file or etcd://HOST:PORT/PREFIX) without contacting
any memcached server (\`memdrain status\` does that).

${EXIT_CODES_HELP}`
  static override examples = ['<%= config.bin %> pool show', '<%= config.bin %> pool show --pool etcd://10.0.0.9:2379/memdrain/prod --json']
  static override flags = { ...poolFlags }

  async run(): Promise<ShowResult> {
    const { flags } = await this.parse(PoolShow)
    const { poolText, currentLockHolder } = await import('../../core/pool/copy.js')
    const store = poolStoreFromFlags(flags)
    const snap = await store.load()
    const lock = await currentLockHolder(store)
    const { changeInProgress } = await import('../../core/pool/change-status.js')
    const change = changeInProgress(snap.pool)
    const result: ShowResult = { location: store.location, revision: snap.revision, ...(lock ? { lock } : {}), ...(change ? { change } : {}), pool: JSON.parse(poolText(snap.pool)) as PoolDocument }
    if (this.jsonEnabled()) return result
    const p = snap.pool
    this.log(`${paint.bold('pool')} ${store.location}  ${paint.bold('revision')} ${snap.revision}  ${paint.bold('hash')} ${p.hash}  ${paint.bold('replicas')} ${p.replicas}  ${paint.bold('clients')} ${p.clients}`)
    const rows = p.servers.map((s) => {
      const t = s.transition
      const done = t === undefined ? undefined : t.moved + t.inPlace + t.movedByClients
      return [
        s.address,
        s.name ?? '',
        String(s.weight),
        s.state === 'active' ? paint.ok(s.state) : s.state === 'deactivating' ? paint.warn(s.state) : paint.dim(s.state),
        t === undefined || done === undefined ? '' : `${t.handoff} since ${t.startedAt}: ${formatCount(done)} of ${formatCount(t.keysAtStart)} (${formatPercent(t.keysAtStart > 0 ? done / t.keysAtStart : 1)})${t.finishedAt ? ', finished' : ''}`,
      ]
    })
    this.log(renderTable(['SERVER', 'NAME', 'WEIGHT', 'STATE', 'TRANSITION'], rows, new Set([2])))
    if (change !== undefined) this.log(paint.warn(describeChangeInProgress(change)))
    this.log(lock === undefined ? 'lock: free' : `lock: held by \`${lock.command}\` (pid ${lock.pid} on ${lock.host}, since ${lock.startedAt})`)
    return result
  }
}
