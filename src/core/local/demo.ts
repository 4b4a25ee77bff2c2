import { readFile, unlink } from 'node:fs/promises'
import path from 'node:path'
import { MemdrainError, ExitCode } from '../errors.js'
import { MetaConnection, NodeBatch, parseAddress, storeMode, ERR, NS, VA } from '../protocol/index.js'
import type { HashName } from '../placement/registry.js'
import { validatePool } from '../pool/validate.js'
import { poolToDocument, type Pool } from '../pool/model.js'
import { poolPlacement } from '../pool/placement.js'
import { writeFileAtomic } from '../pool/atomic-write.js'
import { launchMemcached, stopMemcachedPid, type LaunchedMemcached } from './memcached-launcher.js'

/**
 * `memdrain demo`: a local pool of real memcached servers, a pool file for it, and a realistic
 * key population (mixed sizes, client flags, TTLs — none, short, over 30 days — and non-ASCII keys).
 */

export interface DemoState {
  poolFile: string
  startedAt: string
  servers: { address: string; pid: number; port: number }[]
}

export function demoStateFile(poolFile: string): string {
  return path.join(path.dirname(poolFile), `.${path.basename(poolFile)}.demo.json`)
}

export async function readDemoState(poolFile: string): Promise<DemoState | undefined> {
  try {
    return JSON.parse(await readFile(demoStateFile(poolFile), 'utf8')) as DemoState
  } catch {
    return undefined
  }
}

export async function stopDemo(poolFile: string): Promise<{ stopped: number[] }> {
  const state = await readDemoState(poolFile)
  if (state === undefined) {
    throw new MemdrainError(`no demo pool is recorded beside ${poolFile}`, {
      code: 'NO_DEMO',
      exitCode: ExitCode.precondition,
      suggestions: ['Start one with `memdrain demo`, or pass the --pool the demo was started with.'],
    })
  }
  const stopped = state.servers.filter((s) => stopMemcachedPid(s.pid, s.port)).map((s) => s.pid)
  await unlink(demoStateFile(poolFile)).catch(() => undefined)
  return { stopped }
}

export interface StartDemoOptions {
  poolFile: string
  servers: number
  memoryMb: number
  hash: HashName
  force: boolean
}

export async function startDemoPool(opts: StartDemoOptions): Promise<{ pool: Pool; state: DemoState }> {
  const previous = await readDemoState(opts.poolFile)
  if (previous !== undefined) {
    if (!opts.force) {
      throw new MemdrainError(`a demo pool is already running for ${opts.poolFile}`, {
        code: 'DEMO_RUNNING',
        exitCode: ExitCode.precondition,
        suggestions: ['Stop it with `memdrain demo --stop`, or pass --force to replace it.'],
      })
    }
    await stopDemo(opts.poolFile)
  } else if (!opts.force && (await readFile(opts.poolFile).then(() => true, () => false))) {
    throw new MemdrainError(`${opts.poolFile} exists and is not a demo pool; not overwriting it`, {
      code: 'POOL_EXISTS',
      exitCode: ExitCode.precondition,
      suggestions: ['Pass another --pool for the demo, or --force to overwrite the file.'],
    })
  }
  const launched: LaunchedMemcached[] = []
  try {
    for (let i = 0; i < opts.servers; i++) launched.push(await launchMemcached({ memoryMb: opts.memoryMb }))
  } catch (err) {
    for (const s of launched) stopMemcachedPid(s.pid, s.port)
    throw err
  }
  const state: DemoState = {
    poolFile: opts.poolFile,
    startedAt: new Date().toISOString(),
    servers: launched.map((s) => ({ address: s.address, pid: s.pid, port: s.port })),
  }
  await writeFileAtomic(demoStateFile(opts.poolFile), JSON.stringify(state, null, 2) + '\n')
  const pool = validatePool({ hash: opts.hash, replicas: 1, servers: launched.map((s) => ({ address: s.address })) }, opts.poolFile)
  await writeFileAtomic(opts.poolFile, JSON.stringify(poolToDocument(pool), null, 2) + '\n')
  return { pool, state }
}

/** A deterministic pseudo-random generator, so a demo population is reproducible. */
export function rng(seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (s + 0x6d2b79f5) >>> 0
    let t = s
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const WORDS = ['user', 'session', 'page', 'cart', 'feed', 'profile', 'search', 'price']
const UNICODE = ['café', 'größe', 'данные', '東京', 'ключ', 'naïve', '🙂emoji']

export interface DemoKey {
  key: Buffer
  value: Buffer
  flags: number
  /** Seconds: 0 = no expiry; > 2592000 is sent as an absolute time (memcached's 30-day rule). */
  ttl: number
}

/** The i-th demo key: mostly small values, some large; TTLs none / hours / over 30 days / minutes. */
export function demoKey(i: number, seed = 42): DemoKey {
  const r = rng(seed ^ Math.imul(i, 2654435761))
  const kind = r()
  const word = WORDS[Math.floor(r() * WORDS.length)]!
  const key =
    kind < 0.05
      ? `${UNICODE[Math.floor(r() * UNICODE.length)]}:${i}`
      : kind < 0.08
        ? `${word}:${i}:${'x'.repeat(200)}`.slice(0, 250)
        : `${word}:${i}`
  const sizeRoll = r()
  const size = sizeRoll < 0.7 ? 20 + Math.floor(r() * 200) : sizeRoll < 0.97 ? 500 + Math.floor(r() * 4000) : 20000 + Math.floor(r() * 80000)
  const value = Buffer.alloc(size, `${key}|`)
  const ttlRoll = r()
  const ttl = ttlRoll < 0.5 ? 0 : ttlRoll < 0.8 ? 3600 + Math.floor(r() * 86400) : ttlRoll < 0.9 ? 40 * 86400 : 300 + Math.floor(r() * 600)
  return { key: Buffer.from(key, 'utf8'), value, flags: Math.floor(r() * 0xffffffff), ttl }
}

const SET = storeMode('set')

/** Writes demo keys 0..count-1 to their owners under the pool's placement; returns keys and bytes written. */
export async function loadDemoKeys(pool: Pool, count: number, onProgress?: (written: number) => void): Promise<{ keys: number; bytes: number }> {
  const pp = poolPlacement(pool)
  const conns = await Promise.all(pp.servers.map((s) => MetaConnection.connect(parseAddress(s.address))))
  const batches = pp.servers.map(() => new NodeBatch())
  const inFlight: Promise<void>[] = []
  let bytes = 0
  let errors = 0
  const flush = (s: number): void => {
    const b = batches[s]!
    if (b.count === 0) return
    inFlight.push(
      b.sendDetached(conns[s]!, (r) => {
        if (r.status === ERR || r.status === NS) errors++
      }),
    )
  }
  try {
    for (let i = 0; i < count; i++) {
      const k = demoKey(i)
      const s = pp.placement.owner(k.key)
      // The TTL rule takes -1 for "no expiry" (the demo's 0).
      batches[s]!.store(SET, i, k.key, 0, k.key.length, k.value, 0, k.value.length, k.flags, k.ttl === 0 ? -1 : k.ttl, 0)
      bytes += k.value.length
      if (batches[s]!.length > 256 * 1024) flush(s)
      if (inFlight.length >= 16) {
        await Promise.all(inFlight.splice(0))
        onProgress?.(i + 1)
      }
    }
    for (let s = 0; s < batches.length; s++) flush(s)
    await Promise.all(inFlight.splice(0))
    onProgress?.(count)
  } finally {
    await Promise.all(conns.map((c) => c.close().catch(() => undefined)))
  }
  if (errors > 0) {
    throw new MemdrainError(`${errors} demo keys were not stored`, { code: 'DEMO_LOAD_FAILED', exitCode: ExitCode.failed })
  }
  return { keys: count, bytes }
}

export interface DemoVerification {
  keys: number
  atOwner: number
  missing: number
  wrongValue: number
  elsewhere: number
}

/**
 * Checks every demo key against the pool as it is now: present at the owner the client would
 * ask, with the value it was loaded with; counts keys that are missing or sit on a non-owner.
 */
export async function verifyDemoKeys(pool: Pool, count: number): Promise<DemoVerification> {
  const pp = poolPlacement(pool)
  const all = pool.servers.filter((s) => s.state !== 'removed')
  const conns = await Promise.all(all.map((s) => MetaConnection.connect(parseAddress(s.address))))
  const ownerConn = pp.servers.map((s) => all.findIndex((a) => a.address === s.address))
  const out: DemoVerification = { keys: count, atOwner: 0, missing: 0, wrongValue: 0, elsewhere: 0 }
  try {
    for (let start = 0; start < count; start += 500) {
      const end = Math.min(count, start + 500)
      const batches = all.map(() => new NodeBatch())
      for (let i = start; i < end; i++) {
        const key = demoKey(i).key
        for (const b of batches) b.read(i, key, 0, key.length)
      }
      const found = all.map(() => new Map<number, Buffer>())
      await Promise.all(conns.map((c, s) => batches[s]!.send(c, (r) => {
        if (r.status === VA) found[s]!.set(r.opaque, Buffer.from(r.value!))
      })))
      for (let i = start; i < end; i++) {
        const k = demoKey(i)
        const owner = ownerConn[pp.placement.owner(k.key)]!
        const v = found[owner]!.get(i)
        if (v === undefined) {
          if (found.some((m) => m.has(i))) out.elsewhere++
          else out.missing++
        } else if (!v.equals(k.value)) out.wrongValue++
        else out.atOwner++
      }
    }
  } finally {
    await Promise.all(conns.map((c) => c.close().catch(() => undefined)))
  }
  return out
}
