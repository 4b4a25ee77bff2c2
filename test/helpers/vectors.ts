/**
 * Golden placement vectors: the shared format (one `{"servers", "key", "server", ...}` object a
 * line, `../shared/placement/vectors/*.jsonl`) and the compact fixture format the repository
 * carries (`test/fixtures/placement-vectors/*.jsonl.gz`, written by scripts/select-vector-fixtures.ts):
 * a header line `{"source", "lines", "keys": [...]}`, then one line per pool
 * `{"servers", "weights"?, "names"?, "hostnames"?, "cases": [[keyIndex, server], ...]}`.
 */

import { existsSync, readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { gunzipSync } from 'node:zlib'

import type { PlacementServer } from '../../src/core/placement/index.js'
import { REPO_ROOT } from './cli.js'

export const FIXTURE_DIR = path.join(REPO_ROOT, 'test/fixtures/placement-vectors')

export interface VectorPool {
  servers: string[]
  weights?: number[]
  names?: string[]
  hostnames?: string[]
}

export interface Vector extends VectorPool {
  key: string
  server: number
}

export interface FixtureHeader {
  source: string
  lines: number
  keys: string[]
}

export interface FixturePool extends VectorPool {
  cases: [number, number][]
}

/** The strategy a vector file is for: its name up to the first ".", with "_" → "-". */
export function strategyOfFile(file: string): string {
  return path.basename(file).slice(0, path.basename(file).indexOf('.')).replaceAll('_', '-')
}

/**
 * The full shared vector directory: $MEMDRAIN_VECTORS when set (a path that does not exist, e.g.
 * "none", turns the extra check off, as on a plain clone), else ../shared/placement/vectors when
 * this checkout sits next to it.
 */
export function sharedVectorDir(): string | undefined {
  const env = process.env['MEMDRAIN_VECTORS']
  const dir = env !== undefined && env !== '' ? env : path.resolve(REPO_ROOT, '../shared/placement/vectors')
  return existsSync(dir) ? dir : undefined
}

export function sharedVectorFiles(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.jsonl'))
    .sort()
}

export function readSharedVectors(file: string): Vector[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Vector)
}

export function fixtureFiles(): string[] {
  return readdirSync(FIXTURE_DIR)
    .filter((f) => f.endsWith('.jsonl.gz'))
    .sort()
}

export function readFixture(file: string): { header: FixtureHeader; pools: FixturePool[] } {
  const lines = gunzipSync(readFileSync(path.join(FIXTURE_DIR, file)))
    .toString('utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
  const header = JSON.parse(lines[0]!) as FixtureHeader
  return { header, pools: lines.slice(1).map((l) => JSON.parse(l) as FixturePool) }
}

/** The fixture's cases as plain vectors. */
export function fixtureVectors(file: string): Vector[] {
  const { header, pools } = readFixture(file)
  return pools.flatMap(({ cases, ...pool }) => cases.map(([k, server]) => ({ ...pool, key: header.keys[k]!, server })))
}

export function poolServers(v: VectorPool): PlacementServer[] {
  return v.servers.map((address, j) => {
    const colon = address.lastIndexOf(':')
    const port = Number(address.slice(colon + 1))
    if (colon <= 0 || !Number.isInteger(port)) throw new Error(`bad server address ${address}`)
    return { address, host: address.slice(0, colon), port, weight: v.weights?.[j] ?? 1, name: v.names?.[j], hostname: v.hostnames?.[j] }
  })
}

export function poolKey(v: VectorPool): string {
  return JSON.stringify([v.servers, v.weights ?? null, v.names ?? null, v.hostnames ?? null])
}
