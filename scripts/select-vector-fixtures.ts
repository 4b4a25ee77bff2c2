/**
 * Writes the compact golden-vector fixtures the test suite carries (test/fixtures/placement-vectors)
 * from a directory of full vector files in the shared format (the shared set, or the output of
 * scripts/record-vectors.sh):
 *
 *   node --import tsx scripts/select-vector-fixtures.ts DIR [--out test/fixtures/placement-vectors]
 *
 * Deterministic selection, per pool of each file: every case when the file is small (<= 700
 * lines), else the first key of each key "shape" (length class, ASCII / non-ASCII / astral,
 * routing and hash-tag characters, long-key paths) — the edge cases — plus every key whose crc32
 * is 0 mod a stride chosen to keep about 500 further cases per file.
 */

import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { gzipSync } from 'node:zlib'

import { crc32 } from '../src/core/placement/hashes.js'

interface Vector {
  servers: string[]
  key: string
  server: number
  weights?: number[]
  names?: string[]
  hostnames?: string[]
}

const SMALL_FILE = 700
const SAMPLE_TARGET = 500

function shape(key: string): string {
  const bytes = Buffer.from(key, 'utf8')
  const len = bytes.length
  const lengthClass = len <= 4 ? `=${len}` : `~${32 - Math.clz32(len)}`
  const chars = [...key].some((c) => c.codePointAt(0)! > 0xffff) ? 'astral' : bytes.some((b) => b >= 0x80) ? 'utf8' : 'ascii'
  const special = ['{', '}', '/', '|#|', ':']
    .filter((c) => key.includes(c))
    .join('')
  // SpookyHash switches to its long form at 192 bytes.
  return [lengthClass, chars, special, len >= 192 ? 'long' : ''].join('|')
}

function main(): void {
  const args = process.argv.slice(2)
  const outIdx = args.indexOf('--out')
  const out = outIdx >= 0 ? args[outIdx + 1]! : path.resolve(import.meta.dirname, '../test/fixtures/placement-vectors')
  const src = args.find((a, i) => !a.startsWith('--') && (outIdx < 0 || i !== outIdx + 1))
  if (src === undefined) {
    console.error('usage: select-vector-fixtures.ts DIR [--out FIXTURE_DIR]')
    process.exit(2)
  }
  mkdirSync(out, { recursive: true })
  let total = 0
  let bytes = 0
  for (const file of readdirSync(src).filter((f) => f.endsWith('.jsonl')).sort()) {
    const vectors = readFileSync(path.join(src, file), 'utf8')
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => JSON.parse(l) as Vector)
    const stride = Math.max(1, Math.round(vectors.length / SAMPLE_TARGET))
    const pools = new Map<string, { pool: Omit<Vector, 'key' | 'server'>; cases: [string, number][]; shapes: Set<string> }>()
    for (const v of vectors) {
      const { key, server, ...pool } = v
      const id = JSON.stringify([pool.servers, pool.weights ?? null, pool.names ?? null, pool.hostnames ?? null])
      let p = pools.get(id)
      if (p === undefined) {
        p = { pool, cases: [], shapes: new Set() }
        pools.set(id, p)
      }
      const s = shape(key)
      const edge = !p.shapes.has(s)
      p.shapes.add(s)
      if (vectors.length <= SMALL_FILE || edge || crc32(Buffer.from(key, 'utf8')) % stride === 0) p.cases.push([key, server])
    }
    const keys: string[] = []
    const index = new Map<string, number>()
    const lines = [...pools.values()].map(({ pool, cases }) => {
      const c = cases.map(([key, server]): [number, number] => {
        let k = index.get(key)
        if (k === undefined) {
          k = keys.push(key) - 1
          index.set(key, k)
        }
        return [k, server]
      })
      total += c.length
      return JSON.stringify({ ...pool, cases: c })
    })
    const text = [JSON.stringify({ source: file, lines: vectors.length, keys }), ...lines].join('\n') + '\n'
    const gz = gzipSync(text, { level: 9 })
    bytes += gz.length
    writeFileSync(path.join(out, `${file}.gz`), gz)
  }
  console.log(`${total} cases, ${(bytes / 1e6).toFixed(2)} MB in ${out}`)
}

main()
