// Preload for scripts/bench.ts (used when GNU time is not installed):
//   node --import ./scripts/bench-usage.mjs bin/run.js drain ...
// On exit, appends one line to $MEMDRAIN_BENCH_USAGE (or stderr):
//   BENCH_USAGE <wall s since preload> <user s> <sys s> <maxRSS KiB>
import { appendFileSync } from 'node:fs'

const started = process.hrtime.bigint()
process.on('exit', () => {
  const cpu = process.cpuUsage()
  const ru = process.resourceUsage()
  const wall = Number(process.hrtime.bigint() - started) / 1e9
  const line = `BENCH_USAGE ${wall.toFixed(3)} ${(cpu.user / 1e6).toFixed(3)} ${(cpu.system / 1e6).toFixed(3)} ${ru.maxRSS}\n`
  const file = process.env.MEMDRAIN_BENCH_USAGE
  if (file) appendFileSync(file, line)
  else process.stderr.write(line)
})
