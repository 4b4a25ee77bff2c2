import path from 'node:path'
import { MemdrainError, ExitCode } from '../errors.js'
import { EtcdPoolStore, isEtcdLocation } from './etcd-store.js'
import { FilePoolStore, InlinePoolStore, type PoolStore } from './store.js'
import { validatePool } from './validate.js'

export const DEFAULT_POOL_FILE = 'memdrain.json'

export interface PoolSelection {
  pool?: string | undefined
  servers?: string | undefined
  hash?: string | undefined
  replicas?: number | undefined
  env?: NodeJS.ProcessEnv
  cwd?: string
}

function usage(message: string, suggestions: string[]): MemdrainError {
  return new MemdrainError(message, { code: 'USAGE', exitCode: ExitCode.usage, suggestions })
}

/**
 * Where the pool comes from, in order: --servers/--hash (one-off, read-only), --pool, $MEMDRAIN_POOL,
 * ./memdrain.json. A location etcd://HOST:PORT[,HOST:PORT]/PREFIX is a pool kept in etcd.
 */
export function resolvePoolStore(sel: PoolSelection): PoolStore {
  const env = sel.env ?? process.env
  if (sel.servers !== undefined) {
    if (sel.pool !== undefined) throw usage('--servers and --pool both name a pool; give one of them', ['Drop --pool for a one-off run, or drop --servers to use the file.'])
    if (sel.hash === undefined) throw usage('--servers needs --hash: placement depends on the application\'s client', ['Run `memdrain hashes` to pick the strategy your client uses.'])
    const servers = sel.servers
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '')
      .map((s) => {
        const eq = s.lastIndexOf('=')
        if (eq <= 0) return { address: s }
        // The weight as written when it is not a plain number ("abc", "Infinity"), so the refusal shows it.
        const w = s.slice(eq + 1).trim()
        return { address: s.slice(0, eq).trim(), weight: /^\d+$/.test(w) ? Number(w) : w }
      })
    try {
      return new InlinePoolStore(validatePool({ hash: sel.hash, replicas: sel.replicas ?? 1, servers }, '--servers'))
    } catch (err) {
      // The fix is in the command line, not in a file: a usage error (exit 2).
      if (err instanceof MemdrainError) throw usage(err.message, err.suggestions)
      throw err
    }
  }
  if (sel.hash !== undefined) throw usage('--hash goes with --servers; a pool file names its own hash', ['Edit "hash" in the pool file, or pass --servers too.'])
  const location = sel.pool ?? env.MEMDRAIN_POOL ?? DEFAULT_POOL_FILE
  if (isEtcdLocation(location)) return new EtcdPoolStore(location, env)
  return new FilePoolStore(path.resolve(sel.cwd ?? process.cwd(), location))
}
