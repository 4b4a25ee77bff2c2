import { SourceFollower } from '../engine/follower.js'
import { Refresher, type RefresherOptions, type RefreshStats } from './refresher.js'

/**
 * The follower and the refresher of one source of a copy hand-off, as one thing a job starts
 * before the source's first dump and stops once its catch-up is done. A server that cannot be
 * followed (its logger refused `watch`) leaves the hand-off as it was without: the delta pass
 * before the switch and the catch-up after it.
 */

export type CopyFollowEvent = { type: 'follow'; source: string; state: 'on' | 'unavailable' | 'lost'; message: string }

export interface CopyFollowOptions extends Omit<RefresherOptions, 'follower' | 'onLoss'> {
  onEvent?: ((e: CopyFollowEvent) => void) | undefined
}

export class CopyFollow {
  private constructor(
    private readonly follower: SourceFollower | undefined,
    private readonly refresher: Refresher | undefined,
    private readonly counter = { losses: 0 },
  ) {}

  /** Losses reported since the follow started. */
  get losses(): number {
    return this.counter.losses
  }

  static async start(opts: CopyFollowOptions): Promise<CopyFollow> {
    const emit = opts.onEvent ?? (() => undefined)
    let follower: SourceFollower | undefined
    try {
      follower = await SourceFollower.start(opts.source)
    } catch (err) {
      emit({ type: 'follow', source: opts.source, state: 'unavailable', message: `cannot follow the writes of ${opts.source} (${(err as Error).message}): writes made during the copy are caught up by the passes before and after the switch only` })
      return new CopyFollow(undefined, undefined)
    }
    const counter = { losses: 0 }
    let lastNote = 0
    const refresher = new Refresher({
      ...opts,
      follower,
      onLoss: (message) => {
        counter.losses++
        // Routine under a write storm (the delta pass covers it): said once in a while.
        if (Date.now() - lastNote > 30_000) emit({ type: 'follow', source: opts.source, state: 'lost', message: `${message}: the delta pass before the switch re-checks every copy` })
        lastNote = Date.now()
      },
    })
    try {
      await refresher.start()
    } catch (err) {
      // A link that fails now fails the copy too, which says so; the follower is an addition, not a precondition.
      await refresher.stop()
      emit({ type: 'follow', source: opts.source, state: 'unavailable', message: `cannot follow the writes of ${opts.source} (${(err as Error).message}): writes made during the copy are caught up by the passes before and after the switch only` })
      return new CopyFollow(undefined, undefined)
    }
    const self = new CopyFollow(follower, refresher, counter)
    emit({
      type: 'follow',
      source: opts.source,
      state: 'on',
      message: `following the writes of ${opts.source}${follower.deletions ? ' and its deletions' : ' (deletions are not streamed before memcached 1.6.20: the catch-up finds them)'}`,
    })
    return self
  }

  get following(): boolean {
    return this.follower !== undefined
  }

  get stats(): RefreshStats | undefined {
    return this.refresher?.stats
  }

  /** The switch is done (see switch-marks.ts). */
  setSwitchMarks(marks: readonly (bigint | undefined)[]): void {
    this.refresher?.setSwitchMarks(marks)
  }

  /** Refreshes what is pending now. */
  async settle(): Promise<void> {
    await this.refresher?.settle()
  }

  async stop(): Promise<void> {
    await this.refresher?.stop()
  }
}
