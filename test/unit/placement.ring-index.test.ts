/**
 * Ring.lookup / lookupFloor search only the bucket of the hash's top bits (an index built with
 * the ring): they must answer exactly what a binary search over every point answers, at the
 * edges too (0, 2^32 − 1, a point's own value, equal points, one point, points in one bucket).
 */

import assert from 'node:assert/strict'
import { test } from 'node:test'

import { Ring } from '../../src/core/placement/ring.js'

/** First point >= h, wrapping to 0. */
function plainLookup(points: Uint32Array, h: number): number {
  for (let i = 0; i < points.length; i++) if (points[i]! >= h) return i
  return 0
}

/** Last point <= h, or the last point when h is below every point. */
function plainFloor(points: Uint32Array, h: number): number {
  for (let i = points.length - 1; i >= 0; i--) if (points[i]! <= h) return i
  return points.length - 1
}

let seed = 12345
const rand32 = (): number => {
  // xorshift32: reproducible without a library
  seed ^= seed << 13
  seed ^= seed >>> 17
  seed ^= seed << 5
  return seed >>> 0
}

function ringOf(values: number[]): Ring {
  return Ring.build(values, values.map((_, i) => i % 7))
}

test('ring lookups through the bucket index answer as a search over every point', () => {
  const shapes: number[][] = [
    [0],
    [0xffffffff],
    [5, 5, 5],
    [0, 0xffffffff],
    Array.from({ length: 40 }, (_, i) => 0x12340000 + i), // every point in one bucket
    Array.from({ length: 640 }, () => rand32()),
    Array.from({ length: 20_000 }, () => rand32()),
  ]
  for (const values of shapes) {
    const ring = ringOf(values)
    const probes = [0, 1, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff]
    for (const p of ring.points) probes.push(p, Math.max(0, p - 1), Math.min(0xffffffff, p + 1))
    for (let i = 0; i < 5000; i++) probes.push(rand32())
    for (const h of probes) {
      assert.equal(ring.lookup(h), plainLookup(ring.points, h), `lookup(${h}) over ${values.length} points`)
      assert.equal(ring.lookupFloor(h), plainFloor(ring.points, h), `lookupFloor(${h}) over ${values.length} points`)
    }
  }
})
