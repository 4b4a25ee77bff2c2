import { constants, lstatSync, mkdirSync, openSync } from 'node:fs'
import { homedir } from 'node:os'
import path from 'node:path'
import { ExitCode, MemdrainError } from '../errors.js'

/**
 * Where memdrain keeps what a job needs to resume (key spools, copy journals): a directory of
 * this user that no one else can write. Not $TMPDIR: a tmpfs /tmp loses the journal in the very
 * maintenance reboot a drain is for, and a predictable path in a world-writable directory lets
 * another user plant a directory or a symlink there (root's resumed drain would then write
 * through it).
 *
 * Default: $XDG_STATE_HOME/memdrain, else ~/.local/state/memdrain (XDG base directories).
 */
export function defaultStateRoot(env: NodeJS.ProcessEnv = process.env): string {
  const xdg = env.XDG_STATE_HOME
  // The spec: a relative $XDG_STATE_HOME is invalid and ignored.
  const base = xdg !== undefined && path.isAbsolute(xdg) ? xdg : path.join(env.HOME !== undefined && env.HOME !== '' ? env.HOME : homedir(), '.local', 'state')
  return path.join(base, 'memdrain')
}

function unsafe(dir: string, why: string): MemdrainError {
  return new MemdrainError(`the state directory ${dir} ${why}: another user could plant files or links there that memdrain would write through`, {
    code: 'STATE_DIR_UNSAFE',
    exitCode: ExitCode.precondition,
    suggestions: [
      `Remove ${dir} (check what is in it first) and run again: memdrain creates it with mode 0700.`,
      'Or pass --spool-dir DIR, a directory owned by this user that no one else can write.',
    ],
  })
}

/**
 * Makes `dir` (and missing parents) with mode 0700 and checks it: a real directory (not a
 * symlink), owned by this user, writable by no one else. Throws the fs error when it cannot be
 * made (callers name their own failure), STATE_DIR_UNSAFE when it is not private.
 */
export function privateDir(dir: string): string {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 })
  } catch (err) {
    // Something else is at that name (a file, a link to one): the checks below name it.
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
  }
  const st = lstatSync(dir)
  if (st.isSymbolicLink()) throw unsafe(dir, 'is a symbolic link')
  if (!st.isDirectory()) throw unsafe(dir, 'is not a directory')
  const uid = process.getuid?.()
  if (uid !== undefined && st.uid !== uid) throw unsafe(dir, `belongs to uid ${st.uid}, not to this user (uid ${uid})`)
  if ((st.mode & 0o022) !== 0) throw unsafe(dir, `can be written by ${(st.mode & 0o002) !== 0 ? 'every user' : 'its group'} (mode ${(st.mode & 0o7777).toString(8).padStart(4, '0')})`)
  return dir
}

/** The root for spools and journals: `given` (--spool-dir) or the default, checked private. */
export function stateRoot(given?: string): string {
  return privateDir(path.resolve(given ?? defaultStateRoot()))
}

/** Flags for files in a state directory: never through a symlink planted at their name. */
export const NO_FOLLOW = constants.O_NOFOLLOW

/** Opens `file` for writing without following a link at its name; creates it (0600), truncating it when `truncate`. */
export function openPrivate(file: string, mode: 'append' | 'truncate' | 'read'): number {
  const base = NO_FOLLOW | (mode === 'read' ? constants.O_RDONLY : constants.O_CREAT | (mode === 'append' ? constants.O_RDWR | constants.O_APPEND : constants.O_WRONLY | constants.O_TRUNC))
  return openSync(file, base, 0o600)
}
