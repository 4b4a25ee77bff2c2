/**
 * Reading the migration reports pool-aware clients write (see src/core/client/migration.ts for
 * the format and why): the pool store holds them, memdrain's jobs and `status` sum them.
 */
import { readdir, readFile } from 'node:fs/promises'
import path from 'node:path'
import type { Pool } from './model.js'
import type { PoolStore } from './store.js'
import { parsePoolText } from './validate.js'

export const CLIENT_REPORT_VERSION = 1

export interface ClientMigrationReport {
  version: typeof CLIENT_REPORT_VERSION
  host: string
  pid: number
  updatedAt: string
  /** Server address → keys this process moved off that server (during its current transition). */
  moved: Record<string, number>
  /** Server address → `transition.startedAt` of that server when the moves were counted. */
  transitions: Record<string, string>
}

/** The directory of the client reports of a pool file: `<pool file>.clients`. */
export function clientReportDir(poolFile: string): string {
  return `${path.resolve(poolFile)}.clients`
}

/** Every report document in a pool file's report directory (unreadable or foreign files skipped; no directory: none). */
export async function readReportDir(poolFile: string): Promise<unknown[]> {
  const dir = clientReportDir(poolFile)
  let names: string[]
  try {
    names = await readdir(dir)
  } catch {
    return []
  }
  const docs: unknown[] = []
  for (const name of names) {
    if (!name.endsWith('.json') || name.startsWith('.')) continue
    try {
      docs.push(JSON.parse(await readFile(path.join(dir, name), 'utf8')))
    } catch {
      continue
    }
  }
  return docs
}

/**
 * Sums the migration reports of every client process of `poolFile` per server address: the keys
 * moved by pool-aware application clients (`movedByClients`). Only counts made during each
 * server's current transition (tagged with its `transition.startedAt` in the pool file) are
 * included; untagged counts (the client saw no record: a server marked deactivating by hand)
 * only for a server that has no record now. Unreadable or foreign files in the directory are
 * skipped. No directory: an empty map.
 */
export async function sumClientMigrations(poolFile: string): Promise<Map<string, number>> {
  const docs = await readReportDir(poolFile)
  if (docs.length === 0) return new Map()
  // Without the pool file no count can be matched to a transition: sum them all.
  const pool = await readFile(path.resolve(poolFile), 'utf8')
    .then((text) => parsePoolText(text, poolFile))
    .catch(() => undefined)
  return sumReports(docs, pool)
}

/**
 * The same sum for any store: the file store's report directory, or the etcd store's
 * PREFIX/clients/ keys (read in one range request, so a sum never mixes two states of a key).
 * The inline (--servers) pool has no reports.
 */
export async function sumStoreMigrations(store: PoolStore, pool: Pool | undefined): Promise<Map<string, number>> {
  return sumReports(await store.clientReports(), pool)
}

/** Adds up report documents per server, keeping counts tagged with each server's current transition (see above). */
export function sumReports(docs: readonly unknown[], pool: Pool | undefined): Map<string, number> {
  const sums = new Map<string, number>()
  const current = new Map<string, string>()
  for (const s of pool?.servers ?? []) if (s.transition !== undefined) current.set(s.address, s.transition.startedAt)
  for (const raw of docs) {
    if (typeof raw !== 'object' || raw === null) continue
    const doc = raw as Partial<ClientMigrationReport>
    if (doc.version !== CLIENT_REPORT_VERSION || typeof doc.moved !== 'object' || doc.moved === null) continue
    for (const [address, count] of Object.entries(doc.moved)) {
      if (typeof count !== 'number' || !Number.isFinite(count) || count < 0) continue
      // A count belongs to the server's current transition only if it carries that transition's
      // startedAt; untagged counts (the client saw no record) only while the server has none.
      // Without the pool, every count.
      if (pool !== undefined && doc.transitions?.[address] !== current.get(address)) continue
      sums.set(address, (sums.get(address) ?? 0) + count)
    }
  }
  return sums
}
