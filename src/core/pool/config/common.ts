import { ExitCode, MemdrainError } from '../../errors.js'
import type { Pool } from '../model.js'

/** A pool read from a proxy or router config, and what of that config the pool does not hold. */
export interface ImportedPool {
  pool: Pool
  /** The pool's name in the config. */
  poolName: string
  /** Settings not carried over, defaults assumed, order changes: one sentence each. */
  notes: string[]
}

/** The config is malformed (what the proxy itself would refuse): exit 3, names the file and the key. */
export function configError(file: string, field: string, problem: string, suggestions: string[] = []): MemdrainError {
  return new MemdrainError(`${file}: ${field}: ${problem}`, {
    code: 'CONFIG_INVALID',
    exitCode: ExitCode.precondition,
    suggestions: suggestions.length > 0 ? suggestions : [`Fix ${field} in ${file}.`],
  })
}

/** The config is valid but describes a placement memdrain cannot reproduce: refused, with the reason. */
export function configUnsupported(file: string, field: string, problem: string, suggestions: string[] = []): MemdrainError {
  return new MemdrainError(`${file}: ${field}: ${problem}`, {
    code: 'CONFIG_UNSUPPORTED',
    exitCode: ExitCode.precondition,
    suggestions,
  })
}

/** The pool `wanted` names, or the only one; a clear error listing the pools otherwise. */
export function pickPoolName(names: string[], wanted: string | undefined, file: string): string {
  if (wanted !== undefined) {
    if (names.includes(wanted)) return wanted
    throw configError(file, wanted, `no such pool (pools: ${names.join(', ') || 'none'})`, ['Pass --pool-name with one of the pools listed.'])
  }
  if (names.length === 1) return names[0]!
  throw configError(file, '(pools)', names.length === 0 ? 'holds no pool' : `holds ${names.length} pools (${names.join(', ')}): say which one`, ['Pass --pool-name NAME.'])
}
