import { open, rename, unlink } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import path from 'node:path'

/**
 * Replace `file` with `content` so that a reader (or a crash) sees either the old or the new
 * file, never a half-written one: write a temporary file beside it, fsync, rename over, fsync
 * the directory. The file is created user-only (0600): it may name internal hosts.
 */
export async function writeFileAtomic(file: string, content: string, mode = 0o600): Promise<void> {
  const dir = path.dirname(file)
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`)
  const handle = await open(tmp, 'wx', mode)
  try {
    await handle.writeFile(content)
    await handle.sync()
  } catch (err) {
    await handle.close()
    await unlink(tmp).catch(() => undefined)
    throw err
  }
  await handle.close()
  try {
    await rename(tmp, file)
  } catch (err) {
    await unlink(tmp).catch(() => undefined)
    throw err
  }
  const dirHandle = await open(dir, 'r').catch(() => undefined)
  if (dirHandle !== undefined) {
    await dirHandle.sync().catch(() => undefined)
    await dirHandle.close()
  }
}
