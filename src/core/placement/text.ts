/**
 * Key text helpers for the clients that do not hash the UTF-8 bytes themselves: memjs
 * (UTF-16 code units of the JS string) and pymemcache (one byte per character of the str).
 * Keys arrive as the UTF-8 bytes on the wire, so those strategies decode them first.
 */

const decoder = new TextDecoder()
const encoder = new TextEncoder()

/** UTF-8 bytes of a string (construction time only). */
export function utf8(s: string): Uint8Array {
  return encoder.encode(s)
}

/** A growable scratch buffer of code points, reused across keys (one per placement). */
export class CodePointBuffer {
  buf = new Uint32Array(256)

  /**
   * Decodes the UTF-8 `bytes` into `this.buf` and returns the number of code points. Well-formed
   * input is decoded inline without allocating; anything else goes through TextDecoder, which
   * replaces each ill-formed sequence with U+FFFD exactly as `Buffer#toString` and
   * `TextDecoder#decode` do for the string a JS or Python application would have had.
   */
  decode(bytes: Uint8Array): number {
    const len = bytes.length
    if (this.buf.length < len) this.buf = new Uint32Array(Math.max(len, this.buf.length * 2))
    const out = this.buf
    let n = 0
    let i = 0
    while (i < len) {
      const b0 = bytes[i]!
      if (b0 < 0x80) {
        out[n++] = b0
        i += 1
        continue
      }
      let cp: number
      if (b0 >= 0xc2 && b0 <= 0xdf && i + 1 < len) {
        const b1 = bytes[i + 1]!
        if ((b1 & 0xc0) !== 0x80) return this.slow(bytes)
        cp = ((b0 & 0x1f) << 6) | (b1 & 0x3f)
        i += 2
      } else if (b0 >= 0xe0 && b0 <= 0xef && i + 2 < len) {
        const b1 = bytes[i + 1]!
        const b2 = bytes[i + 2]!
        if ((b1 & 0xc0) !== 0x80 || (b2 & 0xc0) !== 0x80) return this.slow(bytes)
        cp = ((b0 & 0x0f) << 12) | ((b1 & 0x3f) << 6) | (b2 & 0x3f)
        if (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff)) return this.slow(bytes)
        i += 3
      } else if (b0 >= 0xf0 && b0 <= 0xf4 && i + 3 < len) {
        const b1 = bytes[i + 1]!
        const b2 = bytes[i + 2]!
        const b3 = bytes[i + 3]!
        if ((b1 & 0xc0) !== 0x80 || (b2 & 0xc0) !== 0x80 || (b3 & 0xc0) !== 0x80) return this.slow(bytes)
        cp = ((b0 & 0x07) << 18) | ((b1 & 0x3f) << 12) | ((b2 & 0x3f) << 6) | (b3 & 0x3f)
        if (cp < 0x10000 || cp > 0x10ffff) return this.slow(bytes)
        i += 4
      } else {
        return this.slow(bytes)
      }
      out[n++] = cp
    }
    return n
  }

  /** Ill-formed UTF-8: let TextDecoder apply the standard U+FFFD replacement. */
  private slow(bytes: Uint8Array): number {
    const s = decoder.decode(bytes)
    const out = this.buf
    let n = 0
    for (let i = 0; i < s.length; i++) {
      const cp = s.codePointAt(i)!
      if (cp > 0xffff) i++
      out[n++] = cp
    }
    return n
  }
}

/**
 * Python's `repr(bytes)` (what `str(key)` gives for a bytes key), written as ASCII bytes into
 * `out` starting at `offset`; returns the end offset. `out` needs room for 4 × len + 3 bytes.
 * Quote: `'`, unless the bytes contain `'` and no `"`. Escapes: `\\`, the chosen quote, `\t`,
 * `\n`, `\r`, and `\xhh` (lowercase) for other bytes < 0x20 and bytes >= 0x7f.
 */
export function pythonBytesRepr(bytes: Uint8Array, out: Uint8Array, offset: number): number {
  let hasSingle = false
  let hasDouble = false
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!
    if (b === 0x27) hasSingle = true
    else if (b === 0x22) hasDouble = true
  }
  const quote = hasSingle && !hasDouble ? 0x22 : 0x27
  let o = offset
  out[o++] = 0x62 // b
  out[o++] = quote
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!
    if (b === quote || b === 0x5c) {
      out[o++] = 0x5c
      out[o++] = b
    } else if (b === 0x09) {
      out[o++] = 0x5c
      out[o++] = 0x74
    } else if (b === 0x0a) {
      out[o++] = 0x5c
      out[o++] = 0x6e
    } else if (b === 0x0d) {
      out[o++] = 0x5c
      out[o++] = 0x72
    } else if (b < 0x20 || b >= 0x7f) {
      out[o++] = 0x5c
      out[o++] = 0x78
      out[o++] = HEX[b >>> 4]!
      out[o++] = HEX[b & 15]!
    } else {
      out[o++] = b
    }
  }
  out[o++] = quote
  return o
}

const HEX = utf8('0123456789abcdef')
