/**
 * Every expected failure in memdrain is a MemdrainError: it carries a stable code for scripts,
 * the process exit code, and "Try this:" suggestions for people. Anything else that escapes is a bug.
 */

export const ExitCode = {
  ok: 0,
  failed: 1,
  usage: 2,
  precondition: 3,
  partial: 68,
  interrupted: 69,
} as const
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode]

export interface MemdrainErrorOptions {
  code: string
  exitCode?: ExitCodeValue
  suggestions?: string[]
  /** Partial result or extra facts to put in the JSON error envelope. */
  data?: unknown
  cause?: unknown
}

export class MemdrainError extends Error {
  readonly code: string
  readonly exitCode: ExitCodeValue
  readonly suggestions: string[]
  readonly data: unknown

  constructor(message: string, options: MemdrainErrorOptions) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'MemdrainError'
    this.code = options.code
    this.exitCode = options.exitCode ?? ExitCode.failed
    this.suggestions = options.suggestions ?? []
    this.data = options.data
  }
}

export function isMemdrainError(err: unknown): err is MemdrainError {
  return err instanceof MemdrainError
}

/** A job's refusal: what is wrong, what to do, its code; exit 3 (precondition) unless said otherwise. */
export function refuse(message: string, suggestions: string[], code: string, exitCode: ExitCodeValue = ExitCode.precondition): MemdrainError {
  return new MemdrainError(message, { code, exitCode, suggestions })
}
