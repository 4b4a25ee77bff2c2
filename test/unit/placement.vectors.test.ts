/**
 * Golden vectors: every line of every /work/shared/placement/vectors/*.jsonl, recorded with the
 * real clients, must give the observed server.
 */

import assert from 'node:assert/strict'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'

import { isHashName, placementFor } from '../../src/core/placement/index.js'
import type { Placement, PlacementServer } from '../../src/core/placement/index.js'

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')

function vectorsDir(): string {
  const candidates = [path.resolve(repoRoot, '../shared/placement/vectors'), process.env['MEMDRAIN_VECTORS']]
  for (const dir of candidates) {
    if (dir !== undefined && dir !== '' && existsSync(dir)) return dir
  }
  throw new Error(
    `placement vectors not found: looked in ${path.resolve(repoRoot, '../shared/placement/vectors')} and $MEMDRAIN_VECTORS`,
  )
}

interface Vector {
  servers: string[]
  key: string
  server: number
  weights?: number[]
  names?: string[]
}

function parseServer(address: string, weight: number, name: string | undefined): PlacementServer {
  const colon = address.lastIndexOf(':')
  assert.ok(colon > 0, `bad server address ${address}`)
  const port = Number(address.slice(colon + 1))
  assert.ok(Number.isInteger(port), `bad port in ${address}`)
  return { address, host: address.slice(0, colon), port, weight, name }
}

const dir = vectorsDir()
const files = readdirSync(dir)
  .filter((f) => f.endsWith('.jsonl'))
  .sort()

test('the vector directory has the expected files', () => {
  assert.ok(files.length >= 19, `only ${files.length} vector files in ${dir}`)
})

const encoder = new TextEncoder()

for (const file of files) {
  const strategy = file.slice(0, file.indexOf('.')).replaceAll('_', '-')
  test(`vectors ${file}`, () => {
    assert.ok(isHashName(strategy), `${file}: no strategy named ${strategy}`)
    const cache = new Map<string, Placement>()
    const lines = readFileSync(path.join(dir, file), 'utf8').split('\n')
    const mismatches: string[] = []
    let checked = 0
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!
      if (line.trim() === '') continue
      const v = JSON.parse(line) as Vector
      const poolKey = JSON.stringify([v.servers, v.weights ?? null, v.names ?? null])
      let placement = cache.get(poolKey)
      if (placement === undefined) {
        const servers = v.servers.map((a, j) => parseServer(a, v.weights?.[j] ?? 1, v.names?.[j]))
        placement = placementFor(strategy, servers)
        cache.set(poolKey, placement)
      }
      const got = placement.owner(encoder.encode(v.key))
      checked++
      if (got !== v.server) {
        mismatches.push(`${file}:${i + 1} key ${JSON.stringify(v.key)}: got ${got}, observed ${v.server} (servers ${v.servers.join(',')})`)
        if (mismatches.length >= 10) break
      }
    }
    assert.ok(checked > 0, `${file}: no vectors`)
    if (mismatches.length > 0) {
      assert.fail(`${mismatches.length}${mismatches.length >= 10 ? '+' : ''} mismatches in ${file}:\n${mismatches.join('\n')}`)
    }
  })
}
