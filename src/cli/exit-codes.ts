import { ExitCode } from '../core/errors.js'

/** The exit-code policy, for every command's help and the root help (each line fits 80 columns). */
export const EXIT_CODES: ReadonlyArray<readonly [number, string]> = [
  [ExitCode.ok, 'done'],
  [ExitCode.failed, 'failed'],
  [ExitCode.usage, 'usage: bad flags or arguments, unknown command'],
  [ExitCode.precondition, 'precondition: server unreachable or too old, bad pool, locked, no room'],
  [ExitCode.partial, 'partial: threshold not reached, or some keys failed'],
  [ExitCode.interrupted, 'interrupted (Ctrl-C, SIGTERM): state saved, run it again to resume'],
]
