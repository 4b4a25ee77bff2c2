import { execFileSync } from 'node:child_process'

/**
 * A file or directory made read-only for root too (chmod does not stop root): a read-only bind
 * mount over it, else the immutable attribute. Either makes writes fail and a rename over the
 * path fail (EBUSY on a mount point, EPERM on an immutable file). Throws when neither works.
 */
export function makeReadOnly(target: string): 'mount' | 'chattr' {
  try {
    execFileSync('mount', ['--bind', target, target], { stdio: 'ignore' })
    try {
      execFileSync('mount', ['-o', 'remount,ro,bind', target], { stdio: 'ignore' })
    } catch (err) {
      execFileSync('umount', [target], { stdio: 'ignore' })
      throw err
    }
    return 'mount'
  } catch {
    execFileSync('chattr', ['+i', target], { stdio: 'ignore' })
    return 'chattr'
  }
}

/** Undoes makeReadOnly. */
export function undoReadOnly(target: string): void {
  try {
    execFileSync('umount', [target], { stdio: 'ignore' })
  } catch {
    execFileSync('chattr', ['-i', target], { stdio: 'ignore' })
  }
}
