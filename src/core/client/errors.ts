import { ExitCode, MemdrainError } from '../errors.js'

/**
 * Expected failures of the application library. Each code is stable (applications match on it);
 * the message says what went wrong and `suggestions` what to change.
 */
export type PoolClientErrorCode =
  /** The client was closed; no new operation is accepted. */
  | 'CLIENT_CLOSED'
  /** A key that memcached cannot store (empty, or over 250 bytes). */
  | 'KEY_INVALID'
  /** A value that is neither a Buffer nor a string. */
  | 'VALUE_INVALID'
  /** An expiry that is not a whole number of seconds ≥ 0. */
  | 'EXPIRY_INVALID'
  /** An option out of range (named in the message). */
  | 'OPTION_INVALID'
  /** Every server of the key's chain is marked down (or failed): the write went nowhere. */
  | 'NO_SERVER_AVAILABLE'
  /** Fewer servers than `writeQuorum` (or none) took the write: `replies` says who answered what. */
  | 'WRITE_FAILED'

/** What one server of a chain answered to a write (for WRITE_FAILED). */
export interface ServerReply {
  readonly server: string
  /** True when the server answered (stored / deleted / not found); false when it failed or was skipped. */
  readonly ok: boolean
  /** Why it failed: the transport or command error, or "marked down" when it was skipped. */
  readonly error?: Error | undefined
}

export class PoolClientError extends MemdrainError {
  declare readonly code: PoolClientErrorCode
  /** Per-server replies of the operation (for WRITE_FAILED and NO_SERVER_AVAILABLE), chain order. */
  readonly replies: readonly ServerReply[]

  constructor(
    code: PoolClientErrorCode,
    message: string,
    options: { suggestions?: string[]; replies?: readonly ServerReply[]; cause?: unknown } = {},
  ) {
    super(message, {
      code,
      exitCode: ExitCode.failed,
      suggestions: options.suggestions ?? [],
      cause: options.cause,
      data: options.replies === undefined ? undefined : { replies: options.replies.map((r) => ({ server: r.server, ok: r.ok, error: r.error?.message })) },
    })
    this.name = 'PoolClientError'
    this.replies = options.replies ?? []
  }
}

export function isPoolClientError(err: unknown, code?: PoolClientErrorCode): err is PoolClientError {
  return err instanceof PoolClientError && (code === undefined || err.code === code)
}

export function clientClosed(): PoolClientError {
  return new PoolClientError('CLIENT_CLOSED', 'the PoolClient is closed', {
    suggestions: ['Create a new PoolClient (PoolClient.fromPoolFile) after close(), or call close() only at shutdown.'],
  })
}

export function optionInvalid(option: string, problem: string): PoolClientError {
  return new PoolClientError('OPTION_INVALID', `PoolClient option ${option} ${problem}`, {
    suggestions: [`Fix ${option} (see POOL_CLIENT_DEFAULTS for every option and its default).`],
  })
}

/**
 * A server failure as memjs reports it. memjs gives plain Errors: a command the server refused
 * ("MemJS SET: Value too large") is distinguished from a transport failure (connection refused,
 * reset, "socket timed out ...") only by its message prefix, which is what memjs 1.3 writes for
 * every non-zero binary status.
 */
export function isCommandError(err: Error): boolean {
  return err.message.startsWith('MemJS ')
}
