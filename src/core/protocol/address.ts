import { isIPv6 } from 'node:net'
import { ExitCode, MemdrainError } from '../errors.js'

export const DEFAULT_PORT = 11211

/** DNS labels (letters, digits, "-", "_" as some resolvers allow) separated by dots; also IPv4. */
const HOST_NAME = /^[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?)*\.?$/

export interface ServerAddress {
  readonly host: string
  readonly port: number
}

/**
 * Parses "host:port", "[v6]:port", "host", "[v6]" or a bare IPv6 address ("::1", port 11211).
 * A bare IPv6 address cannot carry a port: write it in brackets for that.
 */
export function parseAddress(text: string): ServerAddress {
  const input = text.trim()
  const bad = (why: string, suggestion = 'Write it as host:port, e.g. 10.0.0.5:11211 or [::1]:11211.'): MemdrainError =>
    new MemdrainError(`Invalid server address ${JSON.stringify(text)}: ${why}.`, {
      code: 'BAD_ADDRESS',
      exitCode: ExitCode.usage,
      suggestions: [suggestion],
    })

  let host: string
  let portText: string | undefined
  if (input.startsWith('[')) {
    const close = input.indexOf(']')
    if (close < 0) throw bad('missing "]" after the IPv6 address')
    host = input.slice(1, close)
    if (!isIPv6(host)) throw bad(`${JSON.stringify(host)} is not an IPv6 address`)
    const rest = input.slice(close + 1)
    if (rest !== '') {
      if (!rest.startsWith(':')) throw bad('expected ":port" after "]"')
      portText = rest.slice(1)
    }
  } else {
    const first = input.indexOf(':')
    if (first >= 0 && input.indexOf(':', first + 1) >= 0) {
      if (!isIPv6(input)) throw bad('too many ":"', 'Put IPv6 addresses in brackets: [2001:db8::1]:11211.')
      host = input
    } else if (first >= 0) {
      host = input.slice(0, first)
      portText = input.slice(first + 1)
    } else {
      host = input
    }
  }
  if (host === '') throw bad('the host is empty')
  if (/\s/.test(host)) throw bad('the host contains whitespace')
  // A host is a DNS name, an IPv4 or an IPv6 address: "/", "$(…)", quotes and the like are a
  // pasted URL or a shell expansion that did not happen, never a server.
  if (!isIPv6(host) && !HOST_NAME.test(host)) {
    const odd = [...new Set(host.replace(/[A-Za-z0-9._-]/g, ''))].map((c) => JSON.stringify(c)).join(' ')
    throw bad(odd === '' ? `the host ${JSON.stringify(host)} is not a DNS name (labels of letters, digits, "-" and "_", joined by single dots)` : `the host ${JSON.stringify(host)} contains ${odd}: a host is a DNS name or an IP address`)
  }
  return { host, port: portText === undefined ? DEFAULT_PORT : parsePort(portText, bad) }
}

function parsePort(text: string, bad: (why: string) => MemdrainError): number {
  if (!/^\d{1,5}$/.test(text)) throw bad(`port ${JSON.stringify(text)} is not a number from 1 to 65535`)
  const port = Number(text)
  if (port < 1 || port > 65535) throw bad(`port ${port} is out of range (1-65535)`)
  return port
}

/** "host:port", with brackets around an IPv6 host: the inverse of parseAddress. */
export function formatAddress(addr: ServerAddress): string {
  return addr.host.includes(':') ? `[${addr.host}]:${addr.port}` : `${addr.host}:${addr.port}`
}
