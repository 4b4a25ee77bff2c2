/**
 * Golden vectors recorded with the real clients. The repository's compact selection
 * (test/fixtures/placement-vectors) must pass for every strategy; the full shared set
 * (../shared/placement/vectors or $MEMDRAIN_VECTORS) is an extra check when it is present.
 */

import assert from 'node:assert/strict'
import path from 'node:path'
import { test } from 'node:test'

import { HASH_NAMES, isHashName, placementFor } from '../../src/core/placement/index.js'
import type { Placement } from '../../src/core/placement/index.js'
import {
  fixtureFiles,
  fixtureVectors,
  poolKey,
  poolServers,
  readSharedVectors,
  sharedVectorDir,
  sharedVectorFiles,
  strategyOfFile,
  type Vector,
} from '../helpers/vectors.js'

const encoder = new TextEncoder()

/** Places every vector; returns the mismatches (at most 10) and the number checked. */
function check(file: string, vectors: readonly Vector[]): { mismatches: string[]; checked: number } {
  const strategy = strategyOfFile(file)
  assert.ok(isHashName(strategy), `${file}: no strategy named ${strategy}`)
  const cache = new Map<string, Placement>()
  const mismatches: string[] = []
  let checked = 0
  for (const v of vectors) {
    const id = poolKey(v)
    let placement = cache.get(id)
    if (placement === undefined) {
      placement = placementFor(strategy, poolServers(v))
      cache.set(id, placement)
    }
    const got = placement.owner(encoder.encode(v.key))
    checked++
    if (got !== v.server) {
      mismatches.push(`${file} key ${JSON.stringify(v.key)}: got ${got}, observed ${v.server} (servers ${v.servers.join(',')})`)
      if (mismatches.length >= 10) break
    }
  }
  return { mismatches, checked }
}

function assertAllPass(file: string, vectors: readonly Vector[]): void {
  const { mismatches, checked } = check(file, vectors)
  assert.ok(checked > 0, `${file}: no vectors`)
  if (mismatches.length > 0) {
    assert.fail(`${mismatches.length}${mismatches.length >= 10 ? '+' : ''} mismatches in ${file}:\n${mismatches.join('\n')}`)
  }
}

const fixtures = fixtureFiles()

test('every strategy has golden-vector fixtures in the repository', () => {
  const covered = new Set(fixtures.map(strategyOfFile))
  const missing = HASH_NAMES.filter((h) => !covered.has(h))
  assert.deepEqual(missing, [], `strategies without fixtures: ${missing.join(', ')}`)
})

for (const file of fixtures) {
  test(`fixture vectors ${file}`, () => assertAllPass(file, fixtureVectors(file)))
}

const shared = sharedVectorDir()
if (shared === undefined) {
  test('full shared vector set (optional)', (t) => {
    const note = 'full shared vector set not found (../shared/placement/vectors or $MEMDRAIN_VECTORS): only the repository fixtures were checked'
    console.log(`# ${note}`)
    t.skip(note)
  })
} else {
  for (const file of sharedVectorFiles(shared)) {
    test(`shared vectors ${file}`, () => assertAllPass(file, readSharedVectors(path.join(shared, file))))
  }
}
