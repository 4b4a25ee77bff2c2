/**
 * The application side of memdrain: `import { PoolClient } from 'memdrain'`.
 * See README.md in this directory for the behaviour and the migration reports.
 */
export { PoolClient, type KeyPlacement, type WriteOptions } from './pool-client.js'
export { POOL_CLIENT_DEFAULTS, type FailoverMode, type PoolClientOptions } from './options.js'
export { isPoolClientError, PoolClientError, type PoolClientErrorCode, type ServerReply } from './errors.js'
export type {
  DownEvent,
  ErrorContext,
  Key,
  MigratedEvent,
  PoolClientCounters,
  PoolClientEvents,
  PoolClientStats,
  PoolReachableEvent,
  PoolUnreachableEvent,
  RepairEvent,
  ServerStats,
  TopologyEvent,
  UnavailableEvent,
  UpEvent,
} from './events.js'
export { clientReportDir, sumClientMigrations, sumStoreMigrations, CLIENT_REPORT_VERSION, type ClientMigrationReport } from './migration.js'
