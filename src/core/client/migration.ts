/**
 * Counts of keys moved by application clients (lazy migration), and how they reach the CLI.
 *
 * The pool file belongs to the CLI (rewritten under its lock), so clients do not write it. Each
 * client process writes its own report beside it instead, atomically, every few seconds when its
 * counts changed and once more at close():
 *
 *   <pool file>.clients/<hostname>-<pid>.json
 *   {
 *     "version": 1, "host": "app-7", "pid": 4242, "updatedAt": "2025-01-01T12:00:00.000Z",
 *     "moved": { "10.0.0.3:11211": 1834 },                        // server address → keys moved off it
 *     "transitions": { "10.0.0.3:11211": "2025-01-01T11:58:02.113Z" } // that server's transition.startedAt
 *   }
 *
 * For a pool in etcd the same document goes to the key PREFIX/clients/<hostname>-<pid> (one key
 * per process, so no update is lost), and `sumStoreMigrations(store, pool)` sums either kind.
 *
 * `sumClientMigrations(poolFile)` adds the reports up per server address (what `status` and the
 * drain's transitioned ratio include as `movedByClients`). A count is tagged with the
 * `startedAt` of the server's transition record as the client saw it, and only counts matching
 * the server's current record are summed, so the reports of an earlier drain of the same server
 * do not inflate a later one. Reports of processes that have exited are kept (their moves
 * happened); delete the directory once no server is in transition.
 */
import { mkdir } from 'node:fs/promises'
import { hostname } from 'node:os'
import path from 'node:path'
import { writeFileAtomic } from '../pool/atomic-write.js'
import type { EtcdPoolStore } from '../pool/etcd-store.js'
import { CLIENT_REPORT_VERSION, clientReportDir, type ClientMigrationReport } from '../pool/client-reports.js'

export { CLIENT_REPORT_VERSION, clientReportDir, sumClientMigrations, sumStoreMigrations, sumReports, type ClientMigrationReport } from '../pool/client-reports.js'

/** Several PoolClients of one process on one pool file each get their own report file. */
const reportsInUse = new Map<string, number>()

function claimReportName(dir: string, suffix: string): { file: string; name: string; release: () => void } {
  const base = `${hostname()}-${process.pid}`
  let n = 1
  const nameOf = (i: number): string => (i === 1 ? `${base}${suffix}` : `${base}-${i}${suffix}`)
  while (reportsInUse.has(`${dir}/${nameOf(n)}`)) n++
  const file = `${dir}/${nameOf(n)}`
  reportsInUse.set(file, 1)
  return { file, name: nameOf(n), release: () => reportsInUse.delete(file) }
}

interface ReportTarget {
  /** Where the report goes, for messages (a file, or etcd key). */
  file: string
  write(doc: ClientMigrationReport): Promise<void>
  release(): void
}

function fileReport(poolFile: string): ReportTarget {
  const claim = claimReportName(clientReportDir(poolFile), '.json')
  const file = path.join(clientReportDir(poolFile), claim.name)
  return {
    file,
    write: async (doc) => {
      await mkdir(path.dirname(file), { recursive: true, mode: 0o700 })
      await writeFileAtomic(file, JSON.stringify(doc, null, 2) + '\n')
    },
    release: claim.release,
  }
}

/** etcd: one key per client process under PREFIX/clients/, so no two clients write the same key. */
function etcdReport(store: EtcdPoolStore): ReportTarget {
  const claim = claimReportName(`${store.location}/clients`, '')
  return { file: claim.file, write: (doc) => store.writeClientReport(claim.name, doc), release: claim.release }
}

/**
 * Keys moved by this client, per source server, and the report file they are flushed to (none
 * for a client without a pool file, or with `report: false`).
 */
export class MigrationLedger {
  private readonly moved = new Map<string, number>()
  private readonly transitions = new Map<string, string>()
  private dirty = false
  private timer: NodeJS.Timeout | undefined
  private writing: Promise<void> = Promise.resolve()
  private readonly report: ReportTarget | undefined

  constructor(
    pool: string | EtcdPoolStore | undefined,
    private readonly intervalMs: number,
    private readonly onError: (err: Error) => void,
  ) {
    this.report = pool === undefined ? undefined : typeof pool === 'string' ? fileReport(pool) : etcdReport(pool)
  }

  /** The report file (or etcd key), when there is one. */
  get file(): string | undefined {
    return this.report?.file
  }

  start(): void {
    if (this.report === undefined) return
    this.timer = setInterval(() => void this.flush(), this.intervalMs)
    this.timer.unref()
  }

  /** One key moved off `address`; `transitionStartedAt` is that server's transition record start, if any. */
  record(address: string, transitionStartedAt: string | undefined): void {
    const seen = this.transitions.get(address)
    if (seen !== transitionStartedAt && this.moved.has(address)) {
      // Another transition of this server (or moves made before its drain wrote a record: those
      // keys were gone before the drain counted its keys at start): the counts so far belong to
      // the earlier one, and sumClientMigrations would drop them anyway.
      this.moved.delete(address)
    }
    if (transitionStartedAt === undefined) this.transitions.delete(address)
    else this.transitions.set(address, transitionStartedAt)
    this.moved.set(address, (this.moved.get(address) ?? 0) + 1)
    this.dirty = true
  }

  counts(): Map<string, number> {
    return new Map(this.moved)
  }

  /** Writes the report if the counts changed since the last write. */
  flush(): Promise<void> {
    const report = this.report
    if (report === undefined || !this.dirty) return this.writing
    this.dirty = false
    const doc: ClientMigrationReport = {
      version: CLIENT_REPORT_VERSION,
      host: hostname(),
      pid: process.pid,
      updatedAt: new Date().toISOString(),
      moved: Object.fromEntries(this.moved),
      transitions: Object.fromEntries(this.transitions),
    }
    this.writing = this.writing.then(async () => {
      try {
        await report.write(doc)
      } catch (err) {
        this.dirty = true
        this.onError(new Error(`cannot write the client migration report ${report.file}: ${(err as Error).message}`, { cause: err }))
      }
    })
    return this.writing
  }

  async close(): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer)
    this.timer = undefined
    await this.flush()
    this.report?.release()
  }
}

