/**
 * One racer of the stale-lock takeover test (test/integration/pool-safety.test.ts). Reads lines
 * on stdin: `go ROUND AT` — wait until AT (epoch ms), take the lock, answer `ROUND got` or
 * `ROUND locked CODE`; `release` — release a lock held, answer `released`.
 */
import { createInterface } from 'node:readline'
import { acquireFileLock, type HeldLock } from '../../src/core/pool/lock.js'
import { isMemdrainError } from '../../src/core/errors.js'

const lockFile = process.argv[2]!
let held: HeldLock | undefined

const lines = createInterface({ input: process.stdin })
lines.on('line', (line) => {
  void (async () => {
    const [cmd, round, at] = line.split(' ')
    if (cmd === 'go') {
      while (Date.now() < Number(at)) {
        // Spin to the start instant: both racers must judge the same stale lock at once.
      }
      try {
        held = await acquireFileLock(lockFile, `racer ${process.pid}`)
        process.stdout.write(`${round} got\n`)
      } catch (err) {
        process.stdout.write(`${round} locked ${isMemdrainError(err) ? err.code : String(err)}\n`)
      }
    } else if (cmd === 'release') {
      await held?.release()
      held = undefined
      process.stdout.write('released\n')
    }
  })()
})
