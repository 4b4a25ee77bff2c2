import { Counter, Gauge, Registry } from 'prom-client'
import { CounterSetter } from '../monitor/metrics.js'
import type { PoolClientCounters, PoolClientStats } from './events.js'

/**
 * PoolClient's counters in the Prometheus text exposition format, for an application's own
 * /metrics. A private Registry per client (never prom-client's global one, which the
 * application may use for its own metrics: it can concatenate the two texts, or merge
 * registries). Values are read from `stats()` each time the text is made.
 */

/** Operations by `op` label, from the counters. */
const OPERATIONS: readonly [string, keyof PoolClientCounters][] = [
  ['get', 'gets'],
  ['set', 'sets'],
  ['add', 'adds'],
  ['delete', 'deletes'],
  ['touch', 'touches'],
]

/** Errors and refusals by `kind` label. */
const ERRORS: readonly [string, keyof PoolClientCounters][] = [
  ['server', 'serverErrors'],
  ['command', 'commandErrors'],
  ['write_failure', 'writeFailures'],
  ['unavailable', 'unavailable'],
  ['migration', 'migrationFailures'],
  ['repair', 'repairFailures'],
]

export function clientMetricsRegistry(stats: () => PoolClientStats): Registry {
  const registry = new Registry()
  // Registered first, it reads the client once per exposition and sets every metric.
  new Gauge({
    name: 'memdrain_client_pool_info',
    help: 'The pool the client places keys with (value 1).',
    labelNames: ['revision', 'hash', 'replicas'] as const,
    registers: [registry],
    collect() {
      this.reset()
      refresh(this)
    },
  })
  const counter = <L extends string>(name: string, help: string, labelNames: readonly L[]): CounterSetter<L> =>
    new CounterSetter(new Counter({ name, help, labelNames, registers: [registry] }))
  const ops = counter('memdrain_client_operations_total', 'Operations the application asked for, by op.', ['op'])
  const hits = counter('memdrain_client_hits_total', 'Gets that found the key (at its chain, or at its old owner).', [])
  const misses = counter('memdrain_client_misses_total', 'Gets that did not find the key.', [])
  const fallback = counter('memdrain_client_fallback_reads_total', 'Gets that missed at the key\'s chain and asked its old owner (a deactivating server); result="hit" found it there.', ['result'])
  const migrations = counter('memdrain_client_migrations_total', 'Keys moved off a deactivating server by this client: via="read" (read through, then moved), via="write" (a write deleted the old copy).', ['via'])
  const migrationConflicts = counter('memdrain_client_migration_conflicts_total', 'Moves withdrawn because the old copy changed between read and delete.', [])
  const repairs = counter('memdrain_client_repairs_total', 'Chain links that missed and were repaired from another link.', [])
  const failovers = counter('memdrain_client_failovers_total', 'Links used in place of a down one (failover "next").', [])
  const skipped = counter('memdrain_client_skipped_down_total', 'Links skipped because their server was marked down.', [])
  const errors = counter('memdrain_client_errors_total', 'Errors by kind: server (connection, timeout), command (refused), write_failure, unavailable (whole chain down), migration, repair.', ['kind'])
  const switches = counter('memdrain_client_topology_switches_total', 'Switches to a new version of the pool.', [])
  const requests = counter('memdrain_client_server_requests_total', 'Requests sent to each server.', ['server'])
  const serverErrors = counter('memdrain_client_server_errors_total', 'Requests to each server that failed with a transport error.', ['server'])
  const movedOff = counter('memdrain_client_server_moved_keys_total', 'Keys this client moved off each server.', ['server'])
  const up = new Gauge({ name: 'memdrain_client_server_up', help: '1 when the client sees the server up, 0 while it is marked down.', labelNames: ['server', 'role'] as const, registers: [registry] })
  const background = new Gauge({ name: 'memdrain_client_background_pending', help: 'Background tasks (repairs, moves, the rest of quorum writes) still running.', registers: [registry] })

  const refresh = (info: Gauge<'revision' | 'hash' | 'replicas'>): void => {
    const s = stats()
    for (const [op, k] of OPERATIONS) ops.set({ op }, s[k])
    hits.set({}, s.hits)
    misses.set({}, s.misses)
    fallback.set({ result: 'hit' }, s.fallbackHits)
    fallback.set({ result: 'miss' }, s.fallbackReads - s.fallbackHits)
    migrations.set({ via: 'read' }, s.migrated)
    migrations.set({ via: 'write' }, s.migratedByWrites)
    migrationConflicts.set({}, s.migrationConflicts)
    repairs.set({}, s.repairs)
    failovers.set({}, s.failovers)
    skipped.set({}, s.skippedDown)
    for (const [kind, k] of ERRORS) errors.set({ kind }, s[k])
    switches.set({}, s.topologySwitches)
    up.reset()
    for (const [server, st] of Object.entries(s.servers)) {
      requests.set({ server }, st.requests)
      serverErrors.set({ server }, st.errors)
      movedOff.set({ server }, st.movedByClient)
      up.set({ server, role: st.role }, st.state === 'up' ? 1 : 0)
    }
    background.set(s.backgroundPending)
    info.set({ revision: s.revision, hash: s.hash, replicas: String(s.replicas) }, 1)
  }
  return registry
}
