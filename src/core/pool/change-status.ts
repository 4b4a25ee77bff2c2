import { activeServers, pastSwitch, type HandoffPhase, type Pool } from './model.js'
import { sumSources, transitionedCounts, transitionedRatio } from './transition.js'

/** A pool change in progress as the pool record tells it: what `status` and `pool show` report. */
export interface ChangeInProgress {
  kind: 'drain' | 'rebalance'
  /** Servers leaving the pool (a drain: the drained server). */
  leaving: string[]
  /** Servers joining it (a rebalance). */
  added: string[]
  handoff: 'move' | 'copy'
  /** Where the hand-off stands; 'marked' = started by `memdrain mark`, no job ran yet. */
  phase: HandoffPhase | 'marked'
  startedAt: string
  updatedAt: string
  /** Servers handing over keys. */
  sources: string[]
  keysAtStart: number
  transitioned: number
  ratio: number
  threshold: number
  /** The command that resumes it. */
  resume: string
  /** The command that goes back, when one can (copy hand-off of a rebalance, before the switch). */
  abort?: string | undefined
}

export function changeInProgress(pool: Pool): ChangeInProgress | undefined {
  const r = pool.rebalance
  if (r !== undefined) {
    const before = activeServers(r.previous).map((s) => s.address)
    const after = activeServers(pool).map((s) => s.address)
    const sum = sumSources(Object.values(r.sources))
    return {
      kind: 'rebalance',
      leaving: before.filter((a) => !after.includes(a)),
      added: after.filter((a) => !before.includes(a)),
      handoff: r.handoff,
      phase: r.phase ?? (r.switchedAt !== undefined ? 'switched' : 'marked'),
      startedAt: r.startedAt,
      updatedAt: r.updatedAt,
      sources: Object.keys(r.sources),
      keysAtStart: sum.keysAtStart,
      transitioned: transitionedCounts(sum).done,
      ratio: transitionedRatio(sum),
      threshold: r.threshold,
      resume: 'memdrain rebalance',
      abort: r.handoff === 'copy' && !pastSwitch(r.phase) ? 'memdrain rebalance --abort' : undefined,
    }
  }
  const s = pool.servers.find((x) => x.state === 'deactivating')
  if (s === undefined) return undefined
  const t = s.transition
  const counts = t ?? { keysAtStart: 0, moved: 0, inPlace: 0, skipped: {}, movedByClients: 0 }
  return {
    kind: 'drain',
    leaving: [s.address],
    added: [],
    handoff: t?.handoff ?? (pool.clients === 'pool-aware' ? 'move' : 'copy'),
    phase: t?.phase ?? 'marked',
    startedAt: t?.startedAt ?? '',
    updatedAt: t?.updatedAt ?? '',
    sources: t?.sources !== undefined ? Object.keys(t.sources) : [s.address],
    keysAtStart: counts.keysAtStart,
    transitioned: transitionedCounts(counts).done,
    ratio: transitionedRatio(counts),
    threshold: t?.threshold ?? 0,
    resume: `memdrain drain ${s.address}`,
  }
}
