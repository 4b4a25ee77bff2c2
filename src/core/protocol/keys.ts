import { ExitCode, MemdrainError } from '../errors.js'

/**
 * Putting a key (arbitrary bytes) on a meta-protocol command line.
 *
 * memcached's text parser splits a command line on spaces, ends it at "\n" and handles the key
 * as a C string, so a key token may not contain 0x00, 0x20 or 0x0a; any other byte is stored as
 * sent (checked on 1.6.18 for every byte value). Keys written through the binary protocol
 * (memjs) can contain anything, and the metadump shows them URI-encoded.
 *
 * The rule here, decided per key:
 * - `text`: 1..250 bytes, every byte in 0x21..0x7e or 0x80..0xff (no space, no control byte,
 *   no DEL). Sent as-is. UTF-8 keys go this way, so a 250-byte UTF-8 key still moves.
 * - `base64`: any other key whose base64 form fits the 250-byte token limit, i.e. at most 186
 *   bytes. Sent base64-encoded with the meta `b` flag (mg/ms/md decode it; replies carrying `k`
 *   then echo the key base64-encoded with `b`).
 * - `unaddressable`: longer keys with a space or control byte (or empty / over 250 bytes):
 *   the text protocol cannot name them at all. Callers skip and count them.
 */
export const MAX_KEY_LENGTH = 250
/** Longest key that can go base64-encoded: ceil(186 / 3) * 4 = 248 ≤ 250 (memcached rejects longer tokens). */
export const MAX_BASE64_KEY_LENGTH = 186

export type KeyEncoding = 'text' | 'base64' | 'unaddressable'

const TEXT_BYTE = new Uint8Array(256)
for (let b = 0x21; b <= 0xff; b++) TEXT_BYTE[b] = b === 0x7f ? 0 : 1

export function keyEncoding(key: Uint8Array): KeyEncoding {
  return keyEncodingAt(key, 0, key.length)
}

/** keyEncoding of the key in buf[start, end), without a view of it. */
export function keyEncodingAt(buf: Uint8Array, start: number, end: number): KeyEncoding {
  const n = end - start
  if (n <= 0 || n > MAX_KEY_LENGTH) return 'unaddressable'
  for (let i = start; i < end; i++) {
    if (TEXT_BYTE[buf[i]!] === 0) return n <= MAX_BASE64_KEY_LENGTH ? 'base64' : 'unaddressable'
  }
  return 'text'
}

/** Length of the key token on the wire for a given encoding (not for `unaddressable`). */
export function keyTokenLength(key: Uint8Array, encoding: 'text' | 'base64'): number {
  return encoding === 'text' ? key.length : Math.ceil(key.length / 3) * 4
}

/**
 * Writes the key token at `offset` (the caller made room: keyTokenLength bytes) and returns the
 * offset after it. The caller adds the ` b` flag when `encoding` is `base64`.
 */
export function writeKeyToken(out: Buffer, offset: number, key: Uint8Array, encoding: 'text' | 'base64'): number {
  if (encoding === 'text') {
    out.set(key, offset)
    return offset + key.length
  }
  const view = Buffer.isBuffer(key) ? key : Buffer.from(key.buffer, key.byteOffset, key.length)
  // base64 output is ASCII, so latin1 write is byte-exact; no intermediate Buffer.
  return offset + out.write(view.toString('base64'), offset, 'latin1')
}

/**
 * Convenience form (allocates a string): the token and whether the command needs the `b` flag.
 * A text token is a latin1 string (one char per byte): write it with the 'latin1' encoding.
 */
export function keyToken(key: Uint8Array): { token: string; base64: boolean } {
  const encoding = keyEncoding(key)
  if (encoding === 'unaddressable') throw unaddressableKey(key)
  const view = Buffer.isBuffer(key) ? key : Buffer.from(key.buffer, key.byteOffset, key.length)
  return encoding === 'text' ? { token: view.toString('latin1'), base64: false } : { token: view.toString('base64'), base64: true }
}

export function unaddressableKey(key: Uint8Array): MemdrainError {
  const why =
    key.length === 0
      ? 'it is empty'
      : key.length > MAX_KEY_LENGTH
        ? `it is ${key.length} bytes (memcached allows ${MAX_KEY_LENGTH})`
        : `it is ${key.length} bytes with a space or control byte, and such keys can only be sent base64-encoded up to ${MAX_BASE64_KEY_LENGTH} bytes`
  return new MemdrainError(`Key ${Buffer.from(key).toString('base64')} (base64) cannot be sent with the memcached text protocol: ${why}.`, {
    code: 'KEY_UNADDRESSABLE',
    exitCode: ExitCode.failed,
    suggestions: ['Such a key can only be read through the binary protocol; memdrain skips it and counts it as failed.'],
  })
}

/**
 * Decodes a metadump key (URI-encoded: `%XX` is one byte, anything else is itself) into `out`
 * from `start` to `end` of `src`; returns the number of bytes written. `out` needs end - start
 * bytes at most. A `%` not followed by two hex digits is kept literally.
 */
export function uriDecodeInto(src: Uint8Array, start: number, end: number, out: Uint8Array): number {
  let o = 0
  for (let i = start; i < end; i++) {
    const c = src[i]!
    if (c === 0x25 && i + 2 < end) {
      const hi = HEX[src[i + 1]!]!
      const lo = HEX[src[i + 2]!]!
      if (hi >= 0 && lo >= 0) {
        out[o++] = (hi << 4) | lo
        i += 2
        continue
      }
    }
    out[o++] = c
  }
  return o
}

const HEX = new Int8Array(256).fill(-1)
for (let i = 0; i < 10; i++) HEX[0x30 + i] = i
for (let i = 0; i < 6; i++) {
  HEX[0x41 + i] = 10 + i
  HEX[0x61 + i] = 10 + i
}
