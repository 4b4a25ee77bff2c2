/**
 * A batch of keys as parallel arrays over one byte buffer, reused from batch to batch: the
 * per-key path allocates no objects. Index i's key is keys[keyStart[i] .. keyEnd[i]).
 */
export class KeyBatch {
  count = 0
  keys: Buffer
  keyStart: Int32Array
  keyEnd: Int32Array
  /** Item size from the dump (header + key + value), for throttling and room checks. */
  size: Float64Array
  /** Absolute expiry (server clock), -1 for none. */
  exp: Float64Array
  /**
   * Destinations the spool kept for key i (as route() gave them when it was spooled):
   * dests[i * maxChain .. + destCount[i]); destCount[i] = 0 when the key is not routed yet.
   */
  readonly dests: Int32Array
  readonly destCount: Uint8Array
  private bytes = 0

  constructor(
    readonly capacity: number,
    readonly maxChain = 1,
  ) {
    this.dests = new Int32Array(capacity * maxChain)
    this.destCount = new Uint8Array(capacity)
    this.keys = Buffer.allocUnsafe(capacity * 64)
    this.keyStart = new Int32Array(capacity)
    this.keyEnd = new Int32Array(capacity)
    this.size = new Float64Array(capacity)
    this.exp = new Float64Array(capacity)
  }

  get full(): boolean {
    return this.count >= this.capacity
  }

  clear(): void {
    this.count = 0
    this.bytes = 0
  }

  push(src: Uint8Array, start: number, end: number, size: number, exp: number): void {
    const len = end - start
    if (this.bytes + len > this.keys.length) {
      const next = Buffer.allocUnsafe(Math.max(this.keys.length * 2, this.bytes + len))
      this.keys.copy(next, 0, 0, this.bytes)
      this.keys = next
    }
    const i = this.count++
    if (len <= 32) {
      const k = this.keys
      for (let j = 0, o = this.bytes; j < len; j++) k[o + j] = src[start + j]!
    } else {
      this.keys.set(src.subarray(start, end), this.bytes)
    }
    this.destCount[i] = 0
    this.keyStart[i] = this.bytes
    this.bytes += len
    this.keyEnd[i] = this.bytes
    this.size[i] = size
    this.exp[i] = exp
  }

  key(i: number): Buffer {
    return this.keys.subarray(this.keyStart[i], this.keyEnd[i])
  }

  totalSize(): number {
    let s = 0
    for (let i = 0; i < this.count; i++) s += this.size[i]!
    return s
  }
}
