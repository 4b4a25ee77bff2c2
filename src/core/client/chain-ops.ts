/**
 * Fan-out of one operation over a key's chain: the plumbing of replicated writes, independent of
 * memjs and of the pool (the client passes a `send` per server).
 */

export interface LinkResult<T> {
  readonly server: string
  readonly ok: boolean
  readonly value?: T
  readonly error?: Error
}

export interface FanOut<T> {
  /**
   * Resolves once `quorum` links succeeded (or, without a quorum, once every link answered),
   * with the results so far in chain order (links still running are absent); rejects with the
   * results of every link when the quorum was not met (without a quorum: no link succeeded).
   */
  readonly decided: Promise<LinkResult<T>[]>
  /** Every link's result, once all have settled (for cleanup after the answer). */
  readonly all: Promise<LinkResult<T>[]>
}

export class QuorumNotMet<T> extends Error {
  constructor(readonly results: LinkResult<T>[]) {
    super('quorum not met')
  }
}

export function fanOut<T>(servers: readonly string[], send: (server: string) => Promise<T>, quorum: number | undefined): FanOut<T> {
  const results: (LinkResult<T> | undefined)[] = new Array(servers.length)
  let oks = 0
  let done = 0
  let settled = false
  let resolveDecided!: (r: LinkResult<T>[]) => void
  let rejectDecided!: (e: Error) => void
  const decided = new Promise<LinkResult<T>[]>((resolve, reject) => {
    resolveDecided = resolve
    rejectDecided = reject
  })
  const snapshot = (): LinkResult<T>[] => results.filter((r): r is LinkResult<T> => r !== undefined)
  const check = (): void => {
    if (settled) return
    const total = servers.length
    if (quorum !== undefined) {
      if (oks >= quorum) {
        settled = true
        resolveDecided(snapshot())
      } else if (done === total) {
        // Rejected only once every link answered, so that the error carries every reply.
        settled = true
        rejectDecided(new QuorumNotMet(snapshot()))
      }
    } else if (done === total) {
      settled = true
      if (oks > 0) resolveDecided(snapshot())
      else rejectDecided(new QuorumNotMet(snapshot()))
    }
  }
  const all = Promise.all(
    servers.map((server, i) =>
      send(server).then(
        (value) => {
          results[i] = { server, ok: true, value }
          oks++
        },
        (error: unknown) => {
          results[i] = { server, ok: false, error: error instanceof Error ? error : new Error(String(error)) }
        },
      ).finally(() => {
        done++
        check()
      }),
    ),
  ).then(() => results as LinkResult<T>[])
  check()
  // Callers that only want `all` (moves, repairs) never look at `decided`: its rejection must not
  // become an unhandled rejection. Callers awaiting it still get the rejection.
  decided.catch(() => undefined)
  return { decided, all }
}

/** Runs `task` once per key at a time: a second call for a key whose task is running gets that task's promise. */
export class PerKeyOnce<T> {
  private readonly running = new Map<string, Promise<T>>()

  run(key: string, task: () => Promise<T>): Promise<T> {
    const current = this.running.get(key)
    if (current !== undefined) return current
    const p = task().finally(() => this.running.delete(key))
    this.running.set(key, p)
    return p
  }

  has(key: string): boolean {
    return this.running.has(key)
  }
}
