import assert from 'node:assert/strict'
import { MemdrainError } from '../../src/core/errors.js'

/** Asserts that `p` rejects with a MemdrainError of `code` (and `exitCode`, when given); returns it. */
export async function rejectsWithCode(p: Promise<unknown>, code: string, exitCode?: number): Promise<MemdrainError> {
  try {
    await p
  } catch (err) {
    assert.ok(err instanceof MemdrainError, `expected a MemdrainError, got ${String(err)}`)
    assert.equal(err.code, code, err.message)
    if (exitCode !== undefined) assert.equal(err.exitCode, exitCode)
    assert.ok(err.message.length > 0)
    return err
  }
  assert.fail(`expected rejection with ${code}`)
}
