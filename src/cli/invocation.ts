import { realpathSync } from 'node:fs'
import path from 'node:path'

function realpath(p: string): string | undefined {
  try {
    return realpathSync(p)
  } catch {
    return undefined
  }
}

/**
 * How to run this CLI again from the current directory, for commands we print for people to
 * copy: `memdrain` when that name on the PATH is this very program, else the path it was run by
 * (`./bin/run.js` in a clone, `node_modules/.bin/memdrain` in a project).
 */
export function invocation(bin: string): string {
  const script = process.argv[1]
  const self = script === undefined ? undefined : realpath(script)
  if (script === undefined || self === undefined) return bin
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir !== '' && realpath(path.join(dir, bin)) === self) return bin
  }
  const rel = path.relative(process.cwd(), script)
  return rel.startsWith('..') || path.isAbsolute(rel) ? shellQuote(script) : shellQuote(`./${rel}`)
}

/** An argument as a POSIX shell reads it back (single quotes when it holds anything special). */
export function shellQuote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", `'\\''`)}'`
}
