import { Command, Errors, Flags, type Interfaces } from '@oclif/core'
import { ExitCode, MemdrainError, isMemdrainError } from '../core/errors.js'
import { resolvePoolStore } from '../core/pool/resolve.js'
import { transportSettings, useAuthFile } from '../core/protocol/transport.js'
import type { PoolStore } from '../core/pool/store.js'
import { logLine } from '../ui/log.js'
import { paintErr, useColor } from '../ui/style.js'
import { EXIT_CODES } from './exit-codes.js'

export const EXIT_CODES_HELP = `EXIT CODES\n${EXIT_CODES.map(([c, what]) => `  ${String(c).padEnd(3)} ${what}`).join('\n')}`

interface ErrorEnvelope {
  status: number
  error: { code: string; message: string; suggestions: string[]; data?: unknown }
  warnings: string[]
}

/**
 * Every memdrain command: one JSON envelope on stdout with --json ({status, result, warnings}
 * or {status, error}), human output otherwise, logs and warnings on stderr, and the exit-code
 * policy above. Commands parse flags, call src/core, render, and return their typed result.
 */
export abstract class BaseCommand<T> extends Command {
  static override enableJsonFlag = true
  static override baseFlags = {
    'no-color': Flags.boolean({ description: 'No colors (also NO_COLOR=1).', helpGroup: 'GLOBAL' }),
  }

  protected warnings: string[] = []
  /** --quiet: warnings and the result only; --verbose: every log line (job commands set it). */
  protected verbosity: 'quiet' | 'normal' | 'verbose' = 'normal'
  /** Exit status of a run that returns a result (0, or 68 for partial success). */
  protected status: number = ExitCode.ok

  abstract override run(): Promise<T>

  public override async init(): Promise<void> {
    await super.init()
    // Before any output, and before parsing (a parse error is output too).
    if (this.argv.includes('--no-color')) useColor(false)
  }

  /** Where note() and info() lines go: stderr (log.ts), or through a job's progress display (above its bars) while it draws. */
  protected stderrLine: (line: string) => void = logLine

  /** A warning for people (stderr) and for scripts (the envelope's warnings). */
  protected note(message: string): void {
    this.warnings.push(message)
    if (!this.jsonEnabled()) this.stderrLine(paintErr.warn(`Warning: ${message}`))
  }

  /** Progress and logs: stderr only, so stdout stays one JSON document; none with --quiet. */
  protected info(message: string): void {
    if (this.verbosity !== 'quiet') this.stderrLine(message)
  }

  protected override toSuccessJson(result: unknown): unknown {
    return { status: this.status, result, warnings: this.warnings }
  }

  protected override async catch(err: Error & { exitCode?: number }): Promise<void> {
    const { exitCode, envelope } = this.describeError(err)
    process.exitCode = exitCode
    if (this.jsonEnabled()) {
      this.logJson(envelope)
      return
    }
    if (err instanceof Errors.ExitError) return
    const lines = [paintErr.bad(`Error: ${envelope.error.message}`)]
    if (envelope.error.suggestions.length > 0) {
      lines.push('Try this:', ...envelope.error.suggestions.map((s) => `  - ${s}`))
    }
    if (exitCode === ExitCode.failed && !isMemdrainError(err) && !(err instanceof Errors.CLIError)) {
      lines.push(paintErr.dim(err.stack ?? ''))
    }
    process.stderr.write(lines.join('\n') + '\n')
  }

  protected override async finally(err: Error | undefined): Promise<void> {
    if (err === undefined && this.status !== ExitCode.ok) process.exitCode = this.status
  }

  private describeError(err: Error & { exitCode?: number }): { exitCode: number; envelope: ErrorEnvelope } {
    let exitCode: number
    let code: string
    let suggestions: string[] = []
    let data: unknown
    if (isMemdrainError(err)) {
      exitCode = err.exitCode
      code = err.code
      suggestions = err.suggestions
      data = err.data
    } else if (err instanceof Errors.ExitError) {
      exitCode = err.oclif.exit ?? ExitCode.failed
      code = 'EXIT'
    } else if (err instanceof Errors.CLIError) {
      // oclif raises CLIError for flag/argument parsing problems.
      const isParse = 'parse' in err || /flag|argument|Expected/i.test(err.message)
      exitCode = isParse ? ExitCode.usage : (err.oclif.exit ?? ExitCode.failed)
      code = isParse ? 'USAGE' : 'FAILED'
      suggestions = [...(err.suggestions ?? []), ...(isParse ? [`See \`memdrain ${this.id ?? ''} --help\`.`] : [])]
    } else {
      exitCode = ExitCode.failed
      code = 'INTERNAL'
      suggestions = ['This is a bug in memdrain: please report it with the command you ran.']
    }
    const message = err.message.replace(/^Error: /, '')
    const error: ErrorEnvelope['error'] = { code, message, suggestions }
    if (data !== undefined) error.data = data
    return { exitCode, envelope: { status: exitCode, error, warnings: this.warnings } }
  }
}

/** Commands that read the pool: --pool, or --servers with --hash for one-off runs. */
export const poolFlags = {
  pool: Flags.string({
    description: 'Pool file, or a pool in etcd: etcd://HOST:PORT[,HOST:PORT]/PREFIX (default: $MEMDRAIN_POOL, else ./memdrain.json).',
    helpGroup: 'POOL',
  }),
  servers: Flags.string({
    description: 'One-off pool without a file: comma-separated host:port[=weight], in the client\'s order.',
    helpGroup: 'POOL',
  }),
  hash: Flags.string({
    description: 'Placement strategy for --servers (see `memdrain hashes`).',
    helpGroup: 'POOL',
  }),
  replicas: Flags.integer({
    description: 'Copies per key for --servers (default 1).',
    min: 1,
    helpGroup: 'POOL',
  }),
  'auth-file': Flags.string({
    description: 'memcached ASCII auth (-Y): a file whose first line is user:password (default: $MEMDRAIN_AUTH_FILE, or $MEMDRAIN_MEMCACHED_USERNAME/PASSWORD).',
    helpGroup: 'POOL',
  }),
}

export type PoolFlagValues = Partial<Interfaces.InferredFlags<typeof poolFlags>>

/** The pool store the flags name; `notice` hears what an operator should know (an expired lock taken over). */
export function poolStoreFromFlags(flags: PoolFlagValues, notice?: (message: string) => void): PoolStore {
  // Credentials and TLS settings: read (and refused when malformed) before anything connects.
  useAuthFile(flags['auth-file'])
  transportSettings()
  const store = resolvePoolStore({ pool: flags.pool, servers: flags.servers, hash: flags.hash, replicas: flags.replicas })
  if (notice !== undefined) store.onNotice = notice
  return store
}

export function usageError(message: string, suggestions: string[] = []): MemdrainError {
  return new MemdrainError(message, { code: 'USAGE', exitCode: ExitCode.usage, suggestions })
}
