import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { TokenBucket } from '../../src/core/engine/throttle.js'

/**
 * The token bucket under the engine's load: 4 workers taking batches of 500 keys as fast as it
 * lets them. `--rate 20000` once ran 26k keys/s over its first 3 s (a bucket that started full).
 */
async function run(rate: number, ms: number, batch = 500, workers = 4): Promise<{ at: number; total: number }[]> {
  const bucket = new TokenBucket(rate)
  const start = performance.now()
  const grants: { at: number; total: number }[] = []
  let total = 0
  const worker = async (): Promise<void> => {
    while (performance.now() - start < ms) {
      await bucket.take(batch)
      total += batch
      grants.push({ at: performance.now() - start, total })
    }
  }
  await Promise.all(Array.from({ length: workers }, worker))
  return grants
}

describe('TokenBucket', () => {
  it('keeps the first seconds within the rate: never more than rate × t + one burst + one batch by time t', async () => {
    const rate = 20_000
    const grants = await run(rate, 3000)
    const slack = rate * 0.1 + 500
    for (const g of grants) {
      assert.ok(g.total <= (rate * g.at) / 1000 + slack, `${g.total} keys granted by ${g.at.toFixed(0)} ms: over ${rate}/s`)
    }
    const inFirstSecond = grants.filter((g) => g.at <= 1000).pop()?.total ?? 0
    assert.ok(inFirstSecond <= rate * 1.1 + 500, `first second: ${inFirstSecond} keys at --rate ${rate}`)
    // And it does not throttle below the rate either (the machine is shared: 85 %).
    const last = grants[grants.length - 1]!
    assert.ok(last.total >= (rate * last.at * 0.85) / 1000, `${last.total} keys in ${last.at.toFixed(0)} ms: under ${rate}/s`)
  })

  it('does not burst after an idle spell (a dump between two passes)', async () => {
    const rate = 10_000
    const bucket = new TokenBucket(rate)
    await bucket.take(500)
    await new Promise((r) => setTimeout(r, 1500))
    const start = performance.now()
    let total = 0
    while (performance.now() - start < 200) {
      await bucket.take(500)
      total += 500
    }
    const elapsed = performance.now() - start
    assert.ok(total <= (rate * elapsed) / 1000 + rate * 0.1 + 500, `${total} keys in ${elapsed.toFixed(0)} ms after idling, at ${rate}/s`)
  })

  it('lets a request larger than the burst through, then makes the next ones wait it out', async () => {
    const bucket = new TokenBucket(1000)
    const start = performance.now()
    await bucket.take(500) // burst is 100: goes once 100 tokens are there, 400 in debt
    await bucket.take(500)
    const elapsed = performance.now() - start
    // 1000 tokens at 1000/s: about 0.6 s (0.1 s for the first burst, 0.5 s to pay the debt and refill the second).
    assert.ok(elapsed >= 500 && elapsed < 1500, `two takes of 500 at 1000/s took ${elapsed.toFixed(0)} ms`)
  })

  it('rate 0 is unthrottled', async () => {
    const bucket = new TokenBucket(0)
    const start = performance.now()
    for (let i = 0; i < 1000; i++) await bucket.take(1_000_000)
    assert.ok(performance.now() - start < 500)
  })
})
