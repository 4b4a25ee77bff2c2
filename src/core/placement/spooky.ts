/**
 * Bob Jenkins' SpookyHash V2 (folly/hash/SpookyHashV2), `Hash32(message, seed)`: Hash128 with both
 * seeds = seed, low 32 bits of hash1 (SPEC-more-clients §5.4). mcrouter's WeightedCh3 uses it with
 * seed 0xface2014. The state is 12 u64 words kept as (lo, hi) pairs in one Uint32Array; nothing
 * is allocated per call.
 */

const SC_CONST = 0xdeadbeef | 0
const BLOCK = 96
const BUF_SIZE = 192

/**
 * S[2i] = low word, S[2i + 1] = high word of state variable i, as int32s (V8 keeps int32
 * arithmetic unboxed; the carry of a low-word addition is the adder formula on the sign bits).
 */
const S = new Int32Array(24)
const PARTIAL = new Uint8Array(BLOCK)

/** Carry out of the 32-bit addition a + b = sum. */
function carry(a: number, b: number, sum: number): number {
  return ((a & b) | ((a | b) & ~sum)) >>> 31
}

function add(i: number, j: number): void {
  const a = S[2 * i]!
  const b = S[2 * j]!
  const lo = (a + b) | 0
  S[2 * i + 1] = (S[2 * i + 1]! + S[2 * j + 1]! + carry(a, b, lo)) | 0
  S[2 * i] = lo
}

function xor(i: number, j: number): void {
  S[2 * i] = S[2 * i]! ^ S[2 * j]!
  S[2 * i + 1] = S[2 * i + 1]! ^ S[2 * j + 1]!
}

function rot(i: number, k: number): void {
  let lo = S[2 * i]!
  let hi = S[2 * i + 1]!
  if (k >= 32) {
    const t = lo
    lo = hi
    hi = t
    k -= 32
  }
  if (k > 0) {
    const nh = (hi << k) | (lo >>> (32 - k))
    lo = (lo << k) | (hi >>> (32 - k))
    hi = nh
  }
  S[2 * i] = lo
  S[2 * i + 1] = hi
}

/** Adds the little-endian value of data[p..p+count) (count <= 8) to variable i. */
function addLE(i: number, data: Uint8Array, p: number, count: number): void {
  if (count === 8) {
    addConst(
      i,
      data[p]! | (data[p + 1]! << 8) | (data[p + 2]! << 16) | (data[p + 3]! << 24),
      data[p + 4]! | (data[p + 5]! << 8) | (data[p + 6]! << 16) | (data[p + 7]! << 24),
    )
    return
  }
  let lo = 0
  let hi = 0
  for (let j = 0; j < count; j++) {
    if (j < 4) lo |= data[p + j]! << (8 * j)
    else hi |= data[p + j]! << (8 * (j - 4))
  }
  addConst(i, lo, hi)
}

function addConst(i: number, lo: number, hi: number): void {
  const a = S[2 * i]!
  const sum = (a + lo) | 0
  S[2 * i + 1] = (S[2 * i + 1]! + hi + carry(a, lo, sum)) | 0
  S[2 * i] = sum
}

function set(i: number, lo: number, hi: number): void {
  S[2 * i] = lo
  S[2 * i + 1] = hi
}

const SHORT_MIX_R = [50, 52, 30, 41, 54, 48, 38, 37, 62, 34, 5, 36]
const SHORT_END_R = [15, 52, 26, 51, 28, 9, 47, 54, 32, 25, 63]
const MIX_R = [11, 32, 43, 31, 17, 28, 39, 57, 55, 54, 22, 46]
const END_R = [44, 15, 34, 21, 38, 33, 10, 13, 38, 53, 42, 54]

function shortMix(): void {
  for (let t = 0; t < 12; t++) {
    const x = (t + 2) & 3
    rot(x, SHORT_MIX_R[t]!)
    add(x, (t + 3) & 3)
    xor(t & 3, x)
  }
}

function shortEnd(): void {
  for (let t = 0; t < 11; t++) {
    const x = (t + 3) & 3
    const y = (t + 2) & 3
    xor(x, y)
    rot(y, SHORT_END_R[t]!)
    add(x, y)
  }
}

function short(data: Uint8Array, start: number, len: number, seed: number): void {
  set(0, seed, 0)
  set(1, seed, 0)
  set(2, SC_CONST, SC_CONST)
  set(3, SC_CONST, SC_CONST)
  let p = start
  let remainder = len % 32
  if (len > 15) {
    const end = start + (len - remainder)
    for (; p < end; p += 32) {
      addLE(2, data, p, 8)
      addLE(3, data, p + 8, 8)
      shortMix()
      addLE(0, data, p + 16, 8)
      addLE(1, data, p + 24, 8)
    }
    if (remainder >= 16) {
      addLE(2, data, p, 8)
      addLE(3, data, p + 8, 8)
      shortMix()
      p += 16
      remainder -= 16
    }
  }
  S[7] = (S[7]! + ((len & 0xff) << 24)) | 0
  if (remainder === 0) {
    addConst(2, SC_CONST, SC_CONST)
    addConst(3, SC_CONST, SC_CONST)
  } else if (remainder >= 8) {
    addLE(2, data, p, 8)
    addLE(3, data, p + 8, remainder - 8)
  } else if (remainder > 0) {
    addLE(2, data, p, remainder)
  }
  shortEnd()
}

/** Mix one 96-byte block at data[p..p+96) into the 12 variables. */
function mix(data: Uint8Array, p: number): void {
  for (let i = 0; i < 12; i++) {
    addLE(i, data, p + 8 * i, 8)
    xor((i + 2) % 12, (i + 10) % 12)
    xor((i + 11) % 12, i)
    rot(i, MIX_R[i]!)
    add((i + 11) % 12, (i + 1) % 12)
  }
}

function endPartial(): void {
  for (let j = 0; j < 12; j++) {
    add((j + 11) % 12, (j + 1) % 12)
    xor((j + 2) % 12, (j + 11) % 12)
    rot((j + 1) % 12, END_R[j]!)
  }
}

function long(data: Uint8Array, start: number, len: number, seed: number): void {
  for (let i = 0; i < 12; i += 3) {
    set(i, seed, 0)
    set(i + 1, seed, 0)
    set(i + 2, SC_CONST, SC_CONST)
  }
  const end = start + len - (len % BLOCK)
  let p = start
  for (; p < end; p += BLOCK) mix(data, p)
  const remainder = start + len - p
  const buf = PARTIAL
  for (let j = 0; j < remainder; j++) buf[j] = data[p + j]!
  buf.fill(0, remainder)
  buf[BLOCK - 1] = remainder
  for (let i = 0; i < 12; i++) addLE(i, buf, 8 * i, 8)
  endPartial()
  endPartial()
  endPartial()
}

/** SpookyHashV2::Hash32(data[start..end), seed): a u32. */
export function spookyHash32(data: Uint8Array, start: number, end: number, seed: number): number {
  const len = end - start
  if (len < BUF_SIZE) short(data, start, len, seed | 0)
  else long(data, start, len, seed | 0)
  return S[0]! >>> 0
}
