import { ExitCode, MemdrainError, type ExitCodeValue } from '../errors.js'

/**
 * Failures talking to one memcached server. Each code is stable (scripts match on it) and each
 * message names the server and says what to do; `server` is "host:port" as memdrain dialled it.
 */
export type ServerErrorCode =
  | 'SERVER_UNREACHABLE'
  | 'SERVER_TIMEOUT'
  | 'NOT_MEMCACHED'
  | 'VERSION_TOO_OLD'
  | 'DUMPS_DISABLED'
  | 'CRAWLER_DISABLED'
  | 'CRAWLER_BUSY'
  | 'CONNECTION_CLOSED'
  | 'PROTOCOL_ERROR'
  | 'INTERRUPTED'
  | 'AUTH_FAILED'
  | 'AUTH_REQUIRED'
  | 'AUTH_CONFIG'
  | 'SASL_REQUIRED'
  | 'TLS_FAILED'
  | 'TLS_CONFIG'

export class ServerError extends MemdrainError {
  declare readonly code: ServerErrorCode
  readonly server: string

  constructor(
    code: ServerErrorCode,
    server: string,
    message: string,
    options: { exitCode?: ExitCodeValue; suggestions?: string[]; cause?: unknown } = {},
  ) {
    super(message, { code, exitCode: options.exitCode ?? ExitCode.failed, suggestions: options.suggestions ?? [], cause: options.cause })
    this.name = 'ServerError'
    this.server = server
  }
}

export function isServerError(err: unknown, code?: ServerErrorCode): err is ServerError {
  return err instanceof ServerError && (code === undefined || err.code === code)
}

/** The lowest memcached that has everything memdrain uses (meta commands with `b`, metadump hash). */
export const MIN_MEMCACHED_VERSION = '1.6.10'

export function unreachable(server: string, cause: unknown): ServerError {
  const sysCode = (cause as { code?: unknown } | null)?.code
  const why =
    sysCode === 'ECONNREFUSED'
      ? 'connection refused'
      : sysCode === 'ENOTFOUND' || sysCode === 'EAI_AGAIN'
        ? 'host name not found'
        : sysCode === 'EHOSTUNREACH' || sysCode === 'ENETUNREACH'
          ? 'no route to host'
          : cause instanceof Error
            ? cause.message
            : String(cause)
  return new ServerError('SERVER_UNREACHABLE', server, `Cannot connect to memcached at ${server}: ${why}.`, {
    exitCode: ExitCode.precondition,
    suggestions: [
      `Check that memcached is running on ${server} and listening on that interface (memcached -l).`,
      'Check the address and port in the pool file or --servers, and any firewall in between.',
    ],
    cause,
  })
}

export function timedOut(server: string, what: string, ms: number): ServerError {
  return new ServerError('SERVER_TIMEOUT', server, `memcached at ${server} did not answer ${what} within ${ms} ms.`, {
    exitCode: ExitCode.precondition,
    suggestions: [
      `Check that ${server} is up and not overloaded or paused (high CPU, swapping, SIGSTOP).`,
      'Raise the timeout if the network to this server is slow.',
    ],
  })
}

export function connectTimedOut(server: string, ms: number): ServerError {
  return new ServerError('SERVER_TIMEOUT', server, `No TCP connection to memcached at ${server} within ${ms} ms.`, {
    exitCode: ExitCode.precondition,
    suggestions: [
      `Check that ${server} is reachable from here (host up, route, firewall dropping packets).`,
      'Raise the connect timeout if the network to this server is slow.',
    ],
  })
}

/** close() was called with requests still pending. */
export function closedLocally(server: string, pending: number): ServerError {
  return new ServerError('CONNECTION_CLOSED', server, `The connection to ${server} was closed by memdrain with ${pending} request(s) unanswered.`, {
    exitCode: ExitCode.failed,
  })
}

export function notMemcached(server: string, reply: string): ServerError {
  return new ServerError('NOT_MEMCACHED', server, `${server} does not speak the memcached text protocol: ${reply}.`, {
    exitCode: ExitCode.precondition,
    suggestions: [`Check that ${server} is a memcached port (11211 by default), not another service.`],
  })
}

export function versionTooOld(server: string, version: string): ServerError {
  return new ServerError(
    'VERSION_TOO_OLD',
    server,
    `memcached at ${server} is version ${version}; memdrain needs ${MIN_MEMCACHED_VERSION} or newer (meta commands and lru_crawler metadump).`,
    {
      exitCode: ExitCode.precondition,
      suggestions: [`Upgrade memcached on ${server} to ${MIN_MEMCACHED_VERSION} or newer.`],
    },
  )
}

export function dumpsDisabled(server: string): ServerError {
  return new ServerError('DUMPS_DISABLED', server, `memcached at ${server} refuses to list its keys ("ERROR metadump not allowed"): it was started with -X (--disable-dumping).`, {
    exitCode: ExitCode.precondition,
    suggestions: [`Restart memcached on ${server} without -X / --disable-dumping.`],
  })
}

export function crawlerDisabled(server: string): ServerError {
  return new ServerError('CRAWLER_DISABLED', server, `memcached at ${server} has its LRU crawler disabled ("CLIENT_ERROR lru crawler disabled"), which memdrain needs to list keys.`, {
    exitCode: ExitCode.precondition,
    suggestions: [
      `Enable it at runtime: \`lru_crawler enable\` on ${server}.`,
      'Or restart memcached without `-o no_lru_crawler`.',
    ],
  })
}

export function crawlerBusy(server: string, attempts: number, reply: string): ServerError {
  return new ServerError('CRAWLER_BUSY', server, `memcached at ${server} kept its LRU crawler busy through ${attempts} attempts ("${reply}").`, {
    exitCode: ExitCode.precondition,
    suggestions: [
      'Another metadump or crawl is running on this server: wait for it to finish and run again.',
      'Raise the number of retries or the delay between them.',
    ],
  })
}

export function connectionClosed(server: string, lastError: string | undefined, cause?: unknown): ServerError {
  const after = lastError === undefined ? '' : ` after replying "${lastError}"`
  return new ServerError('CONNECTION_CLOSED', server, `memcached at ${server} closed the connection${after}.`, {
    exitCode: ExitCode.failed,
    suggestions: [`Check the memcached log and status on ${server}; run again to resume.`],
    cause,
  })
}

export function protocolError(server: string, detail: string): ServerError {
  return new ServerError('PROTOCOL_ERROR', server, `Unexpected reply from memcached at ${server}: ${detail}.`, {
    exitCode: ExitCode.failed,
    suggestions: ['This is likely a memdrain bug or an unsupported memcached build: report it with the memcached version.'],
  })
}

export function interrupted(server: string, cause: unknown): ServerError {
  return new ServerError('INTERRUPTED', server, `Stopped reading from ${server}: interrupted.`, {
    exitCode: ExitCode.interrupted,
    cause,
  })
}

/** Printable, bounded excerpt of a raw reply for an error message. */
export function excerpt(text: string, max = 80): string {
  // eslint-disable-next-line no-control-regex
  const clean = text.replace(/[\x00-\x1f\x7f-\uffff]/g, (c) => (c === '\r' ? '\\r' : c === '\n' ? '\\n' : '?'))
  return JSON.stringify(clean.length > max ? `${clean.slice(0, max)}…` : clean)
}
