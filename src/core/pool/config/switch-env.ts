/**
 * What the switch command (--switch-command) is told about the change it deploys, as environment
 * variables. Files are written to a private temporary directory that lives while the command runs.
 */

import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { activeServers, type Pool } from '../model.js'
import { poolText } from '../copy.js'
import { exportConfig } from './index.js'

export interface SwitchChange {
  /** Servers the keys were copied from (drain: the drained server, every server of a modulo pool; rebalance: every server of the old pool). */
  sources: readonly string[]
  /** Servers leaving the pool (empty when servers are only added or reweighted). */
  removed: readonly string[]
  /** Servers that received copies (the new pool's active servers). */
  destinations: readonly string[]
}

/**
 * The pool the applications switch to: its active servers only (no transition or rebalance
 * record), so that a client or a deploy script reads it as a plain pool file.
 */
export function newPoolOf(pool: Pool): Pool {
  return { hash: pool.hash, replicas: pool.replicas, clients: pool.clients, servers: activeServers(pool).map((s) => ({ ...s, transition: undefined })), origin: pool.origin }
}

/**
 * Environment of the switch command:
 *   MEMDRAIN_SOURCE        comma-separated servers keys were copied from
 *   MEMDRAIN_REMOVED       comma-separated servers leaving the pool (may be empty)
 *   MEMDRAIN_DESTINATIONS  comma-separated servers that received copies
 *   MEMDRAIN_NEW_SERVERS   the new pool's active servers, host:port[=weight], in pool order
 *   MEMDRAIN_NEW_POOL      path of a pool file holding the new pool
 *   MEMDRAIN_NEW_CONFIG    path of the proxy/router config for the new pool, when the pool was
 *                          imported (`pool import`): the original file with that pool's servers replaced
 *   MEMDRAIN_CONFIG_FORMAT twemproxy or mcrouter, with MEMDRAIN_NEW_CONFIG
 */
export async function switchEnvironment(change: SwitchChange, pool: Pool): Promise<{ env: Record<string, string>; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'memdrain-switch-'))
  const cleanup = (): Promise<void> => rm(dir, { recursive: true, force: true })
  try {
    const next = newPoolOf(pool)
    const poolFile = path.join(dir, 'new-pool.json')
    await writeFile(poolFile, poolText(next), { mode: 0o600 })
    const env: Record<string, string> = {
      MEMDRAIN_SOURCE: change.sources.join(','),
      MEMDRAIN_REMOVED: change.removed.join(','),
      MEMDRAIN_DESTINATIONS: change.destinations.join(','),
      MEMDRAIN_NEW_SERVERS: (await exportConfig(next, 'servers')).text.trim(),
      MEMDRAIN_NEW_POOL: poolFile,
    }
    if (next.origin !== undefined) {
      const config = await exportConfig(next, next.origin.format)
      const configFile = path.join(dir, `new-config${path.extname(next.origin.file) || (next.origin.format === 'twemproxy' ? '.yml' : '.json')}`)
      await writeFile(configFile, config.text, { mode: 0o600 })
      env.MEMDRAIN_NEW_CONFIG = configFile
      env.MEMDRAIN_CONFIG_FORMAT = next.origin.format
    }
    return { env, cleanup }
  } catch (err) {
    await cleanup()
    throw err
  }
}
