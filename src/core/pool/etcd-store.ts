/**
 * A pool kept in etcd, for fleets: `--pool etcd://HOST:PORT[,HOST:PORT]/PREFIX`.
 *
 *   PREFIX/pool               the pool document (the same JSON and validation as the pool file)
 *   PREFIX/lock               the job lock: holder JSON, attached to a lease kept alive while the job runs
 *   PREFIX/lock-last          the last holder (no lease): so the next job can say whose lock expired, and when
 *   PREFIX/clients/<host>-<pid>[-n]   one migration report per library client process (see client/migration.ts)
 *
 * A save is a transaction on the pool key's mod_revision (compare-and-swap): a change made since
 * the load is reported, never overwritten. Credentials and TLS come from the environment
 * (MEMDRAIN_ETCD_USERNAME / _PASSWORD, MEMDRAIN_ETCD_CA / _CERT / _KEY) and are never printed;
 * credentials in the URL are refused.
 */
import { readFileSync, readlinkSync } from 'node:fs'
import { hostname } from 'node:os'
import { randomBytes } from 'node:crypto'
import { MemdrainError, ExitCode } from '../errors.js'
import { poolToDocument, type Pool } from './model.js'
import { parsePoolText } from './validate.js'
import { pidAlive, type HeldLock, type LockHolder } from './lock.js'
import type { LockInfo, PoolSnapshot, PoolStore } from './store.js'
import { EtcdClient, EtcdRequestError, etcdSecurityFromEnv, type EtcdConnection, type EtcdEndpoint, type EtcdKeyValue } from './etcd/client.js'

export const ETCD_SCHEME = 'etcd://'
/** Lease TTL of the job lock, seconds: a crashed job's lock is free again after at most this long. */
export const LOCK_TTL_SECONDS = 10

export function isEtcdLocation(location: string): boolean {
  return location.startsWith(ETCD_SCHEME)
}

function usage(message: string, suggestions: string[]): MemdrainError {
  return new MemdrainError(message, { code: 'USAGE', exitCode: ExitCode.usage, suggestions })
}

const FORM = 'etcd://HOST:PORT[,HOST:PORT]/PREFIX'

/** Parses `etcd://h:p[,h:p]/prefix` (credentials in it are refused, without echoing them). */
export function parseEtcdLocation(location: string): { endpoints: EtcdEndpoint[]; prefix: string } {
  const rest = location.slice(ETCD_SCHEME.length)
  const slash = rest.indexOf('/')
  const hosts = slash < 0 ? rest : rest.slice(0, slash)
  if (hosts.includes('@')) {
    throw usage('the etcd pool location contains credentials; memdrain does not take them from the command line', [
      'Remove "user:password@" from --pool / MEMDRAIN_POOL and set MEMDRAIN_ETCD_USERNAME and MEMDRAIN_ETCD_PASSWORD instead.',
    ])
  }
  const prefix = slash < 0 ? '' : rest.slice(slash).replace(/\/+$/, '')
  if (prefix === '') throw usage(`the etcd pool location ${location} has no PREFIX: write ${FORM}`, ['For example etcd://10.0.0.9:2379/memdrain/prod.'])
  const endpoints = hosts.split(',').map((h) => {
    const m = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(h.trim())
    const port = m === null ? NaN : Number(m[2])
    if (m === null || port < 1 || port > 65535) throw usage(`"${h}" in the etcd pool location is not HOST:PORT: write ${FORM}`, ['etcd\'s client port is usually 2379.'])
    return { host: m[1]!.replace(/^\[|\]$/g, ''), port }
  })
  return { endpoints, prefix }
}

interface StoredHolder extends LockHolder {
  lease: string
  ttl: number
  /** This boot of this machine and this PID namespace (see processSpace): where `pid` means something. */
  space?: string
  renewedAt?: string
  releasedAt?: string
}

/**
 * Where a PID names one process: the kernel's boot id and the PID namespace. A host name alone is
 * not enough (containers sharing the node's host name have PID namespaces of their own, and a PID
 * checked in the wrong one could call a live job dead).
 */
function processSpace(): string | undefined {
  try {
    return `${readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()}/${readlinkSync('/proc/self/ns/pid')}`
  } catch {
    return undefined
  }
}

function parseHolder(kv: EtcdKeyValue | undefined): StoredHolder | undefined {
  if (kv === undefined) return undefined
  try {
    return JSON.parse(kv.value) as StoredHolder
  } catch {
    return undefined
  }
}

function describeHolder(h: LockHolder): string {
  return `\`${h.command}\` (pid ${h.pid} on ${h.host}, since ${h.startedAt})`
}

export class EtcdPoolStore implements PoolStore {
  readonly writable = true
  readonly location: string
  readonly client: EtcdClient
  /** Told of things an operator should know (a lock taken over after its holder's lease expired). */
  onNotice: ((message: string) => void) | undefined

  constructor(location: string, env: NodeJS.ProcessEnv = process.env, opts: { timeoutMs?: number; lockTtlSeconds?: number } = {}) {
    const { endpoints, prefix } = parseEtcdLocation(location)
    const conn: EtcdConnection = { endpoints, prefix, ...etcdSecurityFromEnv(env), timeoutMs: opts.timeoutMs }
    this.client = new EtcdClient(conn)
    this.location = `${ETCD_SCHEME}${this.client.endpoints}${prefix}`
    this.lockTtl = opts.lockTtlSeconds ?? LOCK_TTL_SECONDS
  }

  private readonly lockTtl: number

  get poolKey(): string {
    return this.client.key('pool')
  }

  async load(): Promise<PoolSnapshot> {
    const { kv } = await this.request(() => this.client.get(this.poolKey))
    if (kv === undefined) {
      throw new MemdrainError(`there is no pool at ${this.location} (key ${this.poolKey} is absent)`, {
        code: 'POOL_NOT_FOUND',
        exitCode: ExitCode.precondition,
        suggestions: [`Store one: memdrain pool push memdrain.json --pool ${this.location}`, 'Check the PREFIX in --pool / MEMDRAIN_POOL.'],
      })
    }
    return this.snapshotOf(kv)
  }

  /** Parses a stored pool value (as load() does); for watchers. */
  snapshotOf(kv: EtcdKeyValue): PoolSnapshot {
    return { pool: parsePoolText(kv.value, `${this.location} (${this.poolKey})`), revision: kv.modRevision }
  }

  /** The revision of the stored pool, '0' when there is none (for a first save). */
  async currentRevision(): Promise<string> {
    const { kv } = await this.request(() => this.client.get(this.poolKey))
    return kv?.modRevision ?? '0'
  }

  async storedRevision(): Promise<{ revision: string; exists: boolean }> {
    const revision = await this.currentRevision()
    return { revision, exists: revision !== '0' }
  }

  /** Who holds the job lock now (PREFIX/lock), if anyone. */
  async lockHolder(): Promise<LockInfo | undefined> {
    const { kv } = await this.request(() => this.client.get(this.client.key('lock')))
    if (kv === undefined) return undefined
    try {
      const h = JSON.parse(kv.value) as LockInfo
      return { command: h.command, pid: h.pid, host: h.host, startedAt: h.startedAt }
    } catch {
      return undefined
    }
  }

  async save(pool: Pool, expectedRevision: string): Promise<string> {
    const text = JSON.stringify(poolToDocument(pool), null, 2) + '\n'
    const r = await this.request(() =>
      this.client.txn([{ key: this.poolKey, target: 'MOD', modRevision: expectedRevision }], [{ put: { key: this.poolKey, value: text } }]),
    )
    if (!r.succeeded) {
      throw new MemdrainError(`the pool at ${this.location} was changed by someone else since memdrain read it; not overwriting`, {
        code: 'POOL_CHANGED',
        exitCode: ExitCode.precondition,
        suggestions: ['Run the command again: it re-reads the pool.'],
      })
    }
    return r.revision
  }

  /**
   * The job lock: PREFIX/lock created only if absent, on a lease kept alive every TTL/3. If the
   * lease cannot be renewed for a whole TTL (etcd unreachable), the lock may be gone: `lost`
   * aborts, so the job stops and saves what it can. A lock whose holder crashed disappears with
   * its lease; PREFIX/lock-last then still names that holder and when it last renewed.
   */
  async lock(command: string): Promise<HeldLock> {
    const c = this.client
    const holder: LockHolder = { pid: process.pid, host: hostname(), command, startedAt: new Date().toISOString(), token: randomBytes(8).toString('hex') }
    const lease = await this.request(() => c.leaseGrant(this.lockTtl))
    const lockKey = c.key('lock')
    const lastKey = c.key('lock-last')
    const space = processSpace()
    const stored = (extra: Partial<StoredHolder> = {}): string => JSON.stringify({ ...holder, lease, ttl: this.lockTtl, ...(space !== undefined ? { space } : {}), renewedAt: new Date().toISOString(), ...extra })
    let r
    let deadHolder: StoredHolder | undefined
    for (let attempt = 0; ; attempt++) {
      try {
        r = await this.request(() =>
          c.txn(
            [{ key: lockKey, target: 'CREATE', createRevision: '0' }],
            [{ put: { key: lockKey, value: stored(), lease } }, { range: { key: lastKey } }, { put: { key: lastKey, value: stored() } }],
            [{ range: { key: lockKey } }],
          ),
        )
      } catch (err) {
        await c.leaseRevoke(lease).catch(() => undefined)
        throw err
      }
      // A holder in this process space (same boot, same PID namespace) whose process is gone
      // (killed, or stopped by an etcd outage that also reset its lease's timer): take its lock now
      // rather than wait for the lease, deleting exactly the lock it wrote (its mod revision).
      const kv = r.ranges[0]?.[0]
      const current = parseHolder(kv)
      if (r.succeeded || attempt > 0 || kv === undefined || current === undefined || space === undefined || current.space !== space || pidAlive(current.pid)) break
      const del = await this.request(() => c.txn([{ key: lockKey, target: 'MOD', modRevision: kv.modRevision }], [{ delete: { key: lockKey } }], []))
      if (!del.succeeded) break
      deadHolder = current
    }
    if (!r.succeeded) {
      await c.leaseRevoke(lease).catch(() => undefined)
      const current = parseHolder(r.ranges[0]?.[0])
      const who = current === undefined ? 'another job' : describeHolder(current)
      throw new MemdrainError(`the pool at ${this.location} is locked by ${who}`, {
        code: 'POOL_LOCKED',
        exitCode: ExitCode.precondition,
        suggestions: [
          'Wait for that job to finish, or stop it (it saves its state and can be resumed).',
          `If that job's host crashed, its lock expires with its etcd lease within ${current?.ttl ?? this.lockTtl} s.`,
        ],
        ...(current !== undefined ? { data: { holder: { pid: current.pid, host: current.host, command: current.command, startedAt: current.startedAt } } } : {}),
      })
    }
    const previous = parseHolder(r.ranges[1]?.[0])
    let tookOver: (LockHolder & { expiredAt?: string }) | undefined
    if (deadHolder !== undefined) {
      tookOver = { pid: deadHolder.pid, host: deadHolder.host, command: deadHolder.command, startedAt: deadHolder.startedAt, token: deadHolder.token }
      this.onNotice?.(`took over the lock of ${describeHolder(deadHolder)}: that process is no longer running on this host`)
    } else if (previous !== undefined && previous.releasedAt === undefined) {
      const renewed = Date.parse(previous.renewedAt ?? previous.startedAt)
      const expiredAt = new Date(renewed + previous.ttl * 1000).toISOString()
      tookOver = { pid: previous.pid, host: previous.host, command: previous.command, startedAt: previous.startedAt, token: previous.token, expiredAt }
      this.onNotice?.(`the previous lock holder ${describeHolder(previous)} did not release the lock; its lease expired at about ${expiredAt} (last renewed ${previous.renewedAt ?? previous.startedAt}, TTL ${previous.ttl} s)`)
    }

    const lost = new AbortController()
    let lastRenewed = Date.now()
    let renewing = false
    const renew = async (): Promise<void> => {
      if (renewing || lost.signal.aborted) return
      renewing = true
      try {
        const ttl = await c.leaseKeepAlive(lease)
        if (ttl <= 0) {
          lost.abort(new MemdrainError(`the lock's etcd lease expired (etcd was unreachable for longer than ${this.lockTtl} s)`, { code: 'LOCK_LOST', exitCode: ExitCode.interrupted }))
          return
        }
        lastRenewed = Date.now()
        await c.txn([{ key: lockKey, target: 'LEASE', lease }], [{ put: { key: lastKey, value: stored() } }]).catch(() => undefined)
      } catch {
        // Unreachable: the lease runs out TTL after the last renewal; stop before it may have.
        if (Date.now() - lastRenewed > this.lockTtl * 1000 - 1500) {
          lost.abort(new MemdrainError(`etcd at ${c.endpoints} has been unreachable for ${Math.round((Date.now() - lastRenewed) / 1000)} s: the job lock cannot be kept`, { code: 'LOCK_LOST', exitCode: ExitCode.interrupted }))
        }
      } finally {
        renewing = false
      }
    }
    const timer = setInterval(() => void renew(), Math.max(250, (this.lockTtl * 1000) / 3))
    timer.unref()
    return {
      holder,
      tookOver,
      lost: lost.signal,
      release: async () => {
        clearInterval(timer)
        try {
          await c.txn([{ key: lockKey, target: 'LEASE', lease }], [{ delete: { key: lockKey } }, { put: { key: lastKey, value: stored({ releasedAt: new Date().toISOString() }) } }])
          await c.leaseRevoke(lease)
        } catch {
          // etcd unreachable: the lock goes with its lease.
        }
      },
    }
  }

  /** Writes one client's migration report (its own key: concurrent clients never overwrite each other). */
  async writeClientReport(name: string, doc: unknown): Promise<void> {
    await this.request(() => this.client.put(this.client.key(`clients/${name}`), JSON.stringify(doc)))
  }

  /** Every client report under PREFIX/clients/ (unparseable ones skipped). */
  async clientReports(): Promise<unknown[]> {
    const kvs = await this.request(() => this.client.getPrefix(this.client.key('clients/')))
    const out: unknown[] = []
    for (const kv of kvs) {
      try {
        out.push(JSON.parse(kv.value))
      } catch {
        // a foreign or broken value: skipped
      }
    }
    return out
  }

  close(): void {
    this.client.close()
  }

  /** Runs an etcd request; etcd's own refusals become errors naming the store. */
  private async request<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn()
    } catch (err) {
      if (err instanceof EtcdRequestError) {
        throw new MemdrainError(`etcd at ${this.location}: ${err.message}`, {
          code: 'POOL_STORE_ERROR',
          exitCode: ExitCode.precondition,
          suggestions: ['Check the etcd user\'s permissions on the PREFIX (MEMDRAIN_ETCD_USERNAME).'],
        })
      }
      throw err
    }
  }
}
