import type { Tally } from './tally.js'
import type { DestinationHealth } from './target-guard.js'
import type { ChangePlan } from '../handoff/runner.js'
import type { CopyFollowEvent } from '../handoff/copy-follow.js'

/**
 * Every event a job emits, in one union: the engine's (one source), the hand-off's (drain,
 * rebalance), warm's and mirror's. The CLI draws them (src/ui/progress.ts) and the job monitor
 * turns them into figures for the progress display and the metrics file
 * (src/core/monitor/job-monitor.ts); both switch on `type` and need no casts.
 */

/** A step of the engine over one source. */
export type EnginePhase = 'connect' | 'dump' | 'preflight' | 'move'

export type EngineEvent =
  | { type: 'phase'; source: string; phase: EnginePhase; pass: number }
  | {
      type: 'dumped'
      source: string
      pass: number
      /** Items the dump listed. */
      entries: number
      /** Distinct live keys of this pass that go somewhere. */
      toMove: number
      bytes: number
      /** Keys of this pass routed to each destination (a key with a chain of n counts at each of its n). */
      perDestination: readonly { address: string; keys: number; bytes: number }[]
    }
  | {
      type: 'progress'
      source: string
      pass: number
      /** Keys of this pass (the dump's count). */
      toMove: number
      /** Keys of this pass handled so far, whatever the outcome (moved, in place, failed, skipped). */
      done: number
      /** The same per destination, indexed like `tally.perDestination`. */
      doneByDestination: readonly number[]
      /** Keys of this pass the dump listed for each destination so far (moves may start while it runs). */
      listedByDestination: readonly number[]
      /** The job's figures over its passes so far (the engine's live tally: read, do not keep). */
      tally: Tally
      /** Average over this pass. */
      keysPerSecond: number
      /** The guard's factor on the rate: 1 normal, 0.5… throttled, 0 paused. */
      rateFactor: number
      /** The keys/s the throttle allows now (--rate × rateFactor); 0 = unthrottled. */
      rate: number
      /** Each destination's last polled health. */
      health: ReadonlyMap<string, DestinationHealth>
    }
  | { type: 'guard'; source: string; health: DestinationHealth }
  | { type: 'pass-done'; source: string; pass: number; moved: number; inPlace: number; failed: number }

/** Events of a hand-off (drain, rebalance): the steps around the engine's passes. */
export type HandoffEvent =
  | { type: 'marked'; server: string; state: 'deactivating' | 'removed' | 'active'; resumed: boolean }
  | { type: 'rebalance'; phase: 'started' | 'resumed' | 'finished'; added: string[]; removed: string[] }
  /** After every source's first dump: what the change moves, from where to where (drawn before the move starts). */
  | { type: 'plan'; plan: ChangePlan }
  /** Waiting before the first key moves, so pool-aware clients see the pool change first. */
  | { type: 'grace'; seconds: number }
  | { type: 'switch'; phase: 'waiting' | 'done' }
  | { type: 'catch-up'; phase: 'start' | 'progress' | 'done'; checked: number; total: number; caughtUp: number; invalidated: number }
  /** Copy hand-off, right before the switch: one pass over the journals for what following the sources' writes could not see. */
  | { type: 'delta'; phase: 'start' | 'done'; checked: number; caughtUp: number; invalidated: number }
  /** Copy hand-off: a source's write-ahead journal was lost (a rerun); `adopted` copies found at their owners were taken as copied. */
  | { type: 'journal-lost'; source: string; message: string; adopted: number }
  /** Copy hand-off after the switch: the pool store could not record a step (the keys are safe; a rerun records it). */
  | { type: 'record-unsaved'; message: string }
  /** Copy hand-off: following a source's writes between the copy and the switch (on, unavailable, lost). */
  | CopyFollowEvent
  /** Rebalance, copy hand-off: deleting what servers that stay no longer own. */
  | { type: 'cleanup'; phase: 'start' | 'done'; deleted: number }
  | { type: 'purged'; server: string }
  | { type: 'source-restarted'; server: string; uptimeSeconds: number; lost: number; message: string }
  /** The transitioned ratio of a server in transition, each time the job saves its record. */
  | { type: 'transition'; server: string; ratio: number }

export type WarmEvent =
  | { type: 'peer'; peer: string; index: number; of: number }
  | { type: 'peer-unreachable'; peer: string; message: string }

export interface PassiveHealth {
  usedBytes: number
  limitBytes: number
  items: number
  /** Evictions on the passive since the mirror started. */
  evictions: number
}

export interface MirrorPass {
  pass: number
  startedAt: string
  /** Live keys the active's dump listed. */
  listed: number
  /** Keys new or changed since the last pass (all of them in pass 1). */
  changed: number
  copied: number
  /** Deleted on the passive (with `delete`): gone from the active. */
  deleted: number
  failed: number
  skipped: number
  bytes: number
  durationMs: number
  lagMs: number
  passive: PassiveHealth
}

export type MirrorEvent =
  | { type: 'mirror-pass'; result: MirrorPass }
  | { type: 'mirror-evictions'; passive: string; evictions: number }
  | { type: 'mirror-passive-down'; passive: string; message: string }
  | { type: 'mirror-passive-back'; passive: string }
  /** Following the active's writes between passes: on, unavailable, or lost (a pass starts at once). */
  | { type: 'mirror-follow'; state: 'on' | 'unavailable' | 'lost'; message: string }

export type JobEvent = EngineEvent | HandoffEvent | WarmEvent | MirrorEvent

/** The jobs that emit JobEvents (the `job` label of the metrics). */
export type JobKind = 'drain' | 'rebalance' | 'warm' | 'mirror'
