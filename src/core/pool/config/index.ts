/**
 * Configs in and out: the pool of a proxy or router config as a memdrain pool (`pool import`),
 * and a pool's active servers in a config format (`pool export`, MEMDRAIN_NEW_CONFIG).
 */

import { readFile } from 'node:fs/promises'
import path from 'node:path'
import { MemdrainError, ExitCode } from '../../errors.js'
import { activeServers, type ConfigFormat, type ExportFormat, type Pool } from '../model.js'
import type { ImportedPool } from './common.js'
import { exportMcrouter, importMcrouter } from './mcrouter.js'
import { exportTwemproxy, importTwemproxy } from './twemproxy.js'

export type { ImportedPool } from './common.js'

async function readConfig(file: string, what: string): Promise<string> {
  try {
    return await readFile(file, 'utf8')
  } catch (err) {
    throw new MemdrainError(`cannot read ${what} ${file}: ${(err as Error).message}`, {
      code: 'CONFIG_UNREADABLE',
      exitCode: ExitCode.precondition,
      suggestions: ['Check the path and its permissions.'],
    })
  }
}

/** Reads `file` as a `from` config and returns the pool `poolName` (or its only pool) describes. */
export async function importConfig(file: string, from: ConfigFormat, poolName?: string): Promise<ImportedPool> {
  const abs = path.resolve(file)
  const text = await readConfig(abs, `the ${from} config`)
  return from === 'twemproxy' ? importTwemproxy(text, abs, poolName) : importMcrouter(text, abs, poolName)
}

export interface ExportOptions {
  /** The pool's name in the config (default: the origin's, else "memdrain"). */
  poolName?: string | undefined
  /** A config whose other keys to keep (default: the file the pool was imported from, when it is of this format). */
  template?: string | undefined
}

export interface ExportedConfig {
  text: string
  /** The template used, when one was. */
  template?: string
  poolName?: string
}

/**
 * The pool's active servers (the pool the applications read once a change is done) in `to` format.
 * `servers` is memdrain's own `--servers` syntax: comma-separated host:port[=weight], in pool order.
 */
export async function exportConfig(pool: Pool, to: ExportFormat, opts: ExportOptions = {}): Promise<ExportedConfig> {
  if (to === 'servers') {
    return { text: activeServers(pool).map((s) => (s.weight === 1 ? s.address : `${s.address}=${s.weight}`)).join(',') + '\n' }
  }
  const origin = pool.origin?.format === to ? pool.origin : undefined
  const poolName = opts.poolName ?? origin?.pool ?? 'memdrain'
  const templateFile = opts.template !== undefined ? path.resolve(opts.template) : origin?.file
  const template = templateFile === undefined ? undefined : { file: templateFile, text: await readConfig(templateFile, 'the template') }
  const text = to === 'twemproxy' ? exportTwemproxy(pool, { poolName, template }) : exportMcrouter(pool, { poolName, template })
  return { text, poolName, ...(templateFile !== undefined ? { template: templateFile } : {}) }
}
