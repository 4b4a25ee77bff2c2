// Preload: where a process's CPU went, thread by thread (Linux /proc), printed to stderr at exit:
//   npm run bench -- --keys 300000 --child-node-args=--import=$PWD/scripts/bench-threads.mjs
//   BENCH_THREADS main 0.93 s, other threads 0.25 s (V8's workers: optimizing compiles, GC)
// With --no-concurrent-recompilation as well, V8 compiles on the main thread: the other threads'
// share that moves there is the optimizing compiler's (the JIT's warm-up, a fixed cost per run).
import { readdirSync, readFileSync } from 'node:fs'

process.on('exit', () => {
  let main = 0
  let others = 0
  for (const tid of readdirSync('/proc/self/task')) {
    let stat
    try {
      stat = readFileSync(`/proc/self/task/${tid}/stat`, 'latin1')
    } catch {
      continue // the thread ended meanwhile
    }
    // Fields after the command name: utime and stime are the 12th and 13th (clock ticks).
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    const seconds = (Number(f[11]) + Number(f[12])) / 100
    if (Number(tid) === process.pid) main += seconds
    else others += seconds
  }
  process.stderr.write(`BENCH_THREADS main ${main.toFixed(2)} s, other threads ${others.toFixed(2)} s (V8's workers: optimizing compiles, GC)\n`)
})
