import cliProgress from 'cli-progress'
import type { EngineEvent } from '../core/engine/engine.js'
import { formatBytes, formatCount } from './format.js'
import type { ChangePlan } from '../core/handoff/index.js'
import { describeScope } from './plan-summary.js'

/**
 * Draws engine events on stderr: a cli-progress multibar on a terminal (overall + one bar per
 * destination), a plain line every few seconds otherwise, nothing with --json unless asked.
 */
export interface ProgressView {
  event(e: EngineEvent | { type: string; [k: string]: unknown }): void
  stop(): void
}

export function createProgress(opts: { json: boolean; label: string }): ProgressView {
  const tty = process.stderr.isTTY === true && process.env.TERM !== 'dumb'
  if (opts.json && !tty) return plainProgress(opts.label, true)
  return tty && !opts.json ? barProgress(opts.label) : plainProgress(opts.label, opts.json)
}

function describe(e: EngineEvent | { type: string; [k: string]: unknown }): string | undefined {
  switch (e.type) {
    case 'phase':
      return `${(e as { phase: string }).phase}${(e as { pass: number }).pass > 0 ? ` (pass ${(e as { pass: number }).pass})` : ''}`
    case 'dumped': {
      const d = e as Extract<EngineEvent, { type: 'dumped' }>
      return `pass ${d.pass}: dump listed ${formatCount(d.entries)} items, ${formatCount(d.toMove)} to move (${formatBytes(d.bytes)})`
    }
    case 'guard': {
      const g = (e as Extract<EngineEvent, { type: 'guard' }>).health
      return `guard: ${g.address} is ${g.state} (free ${formatBytes(g.freeBytes)}, evictions +${g.evictions})`
    }
    case 'pass-done': {
      const p = e as Extract<EngineEvent, { type: 'pass-done' }>
      return `pass ${p.pass} done: ${formatCount(p.moved)} moved, ${formatCount(p.inPlace)} in place, ${formatCount(p.failed)} failed`
    }
    case 'marked':
      return `${String(e.server)} marked ${String(e.state)}${e.resumed === true && e.state === 'deactivating' ? ' (resuming)' : ''}`
    case 'switch':
      return e.phase === 'waiting' ? 'waiting for applications to switch to the new servers' : 'switch confirmed'
    case 'catch-up':
      return e.phase === 'progress' ? undefined : `catch-up ${String(e.phase)}: ${String(e.checked)}/${String(e.total)} checked, ${String(e.caughtUp)} re-copied, ${String(e.invalidated)} invalidated`
    case 'peer':
      return `peer ${Number(e.index) + 1}/${String(e.of)}: copying from ${String(e.peer)}`
    case 'rebalance': {
      const change = [...(e.added as string[]).map((a) => `+${a}`), ...(e.removed as string[]).map((a) => `-${a}`)].join(' ')
      return `rebalance ${String(e.phase)}${change !== '' ? ` (${change})` : ''}`
    }
    case 'purged':
      return `purged ${String(e.server)} (flush_all on that server only)`
    case 'source-restarted':
      return String(e.message)
    case 'plan': {
      const p = (e as unknown as { plan: ChangePlan }).plan
      return describeScope(p.scope, p.fraction)
    }
    default:
      return undefined
  }
}

function plainProgress(label: string, quiet: boolean): ProgressView {
  let last = 0
  return {
    event(e) {
      if (e.type === 'progress') {
        const p = e as Extract<EngineEvent, { type: 'progress' }>
        if (Date.now() - last < 3000) return
        last = Date.now()
        const t = p.tally
        process.stderr.write(
          `${label}: ${formatCount(t.processed)}/${formatCount(p.toMove)} keys, ${formatCount(t.moved)} moved, ${formatCount(t.inPlace)} in place, ${formatCount(t.failed)} failed, ${formatCount(p.keysPerSecond)} keys/s${p.rateFactor < 1 ? ` (guard: rate x${p.rateFactor})` : ''}\n`,
        )
        return
      }
      if (quiet && e.type !== 'guard') return
      const line = describe(e)
      if (line !== undefined) process.stderr.write(`${label}: ${line}\n`)
    },
    stop() {},
  }
}

function barProgress(label: string): ProgressView {
  const multi = new cliProgress.MultiBar(
    {
      stream: process.stderr,
      clearOnComplete: false,
      hideCursor: true,
      format: '{name} |{bar}| {value}/{total} {info}',
      barsize: 30,
    },
    cliProgress.Presets.shades_classic,
  )
  let overall: cliProgress.SingleBar | undefined
  const perDest = new Map<string, cliProgress.SingleBar>()
  let guardNote = ''
  return {
    event(e) {
      if (e.type === 'progress') {
        const p = e as Extract<EngineEvent, { type: 'progress' }>
        const t = p.tally
        if (overall === undefined) overall = multi.create(p.toMove, 0, { name: label.padEnd(22), info: '' })
        overall.setTotal(p.toMove)
        overall.update(Math.min(t.processed, p.toMove), {
          info: `${formatCount(p.keysPerSecond)} keys/s  moved ${formatCount(t.moved)}  in place ${formatCount(t.inPlace)}  failed ${formatCount(t.failed)}${guardNote}`,
        })
        for (const d of t.perDestination) {
          let bar = perDest.get(d.address)
          if (bar === undefined) {
            bar = multi.create(p.toMove, 0, { name: `  → ${d.address}`.padEnd(22), info: '' })
            perDest.set(d.address, bar)
          }
          bar.update(d.keys + d.inPlace, { info: `${formatBytes(d.bytes)}${d.failed > 0 ? `  failed ${formatCount(d.failed)}` : ''}` })
        }
        return
      }
      if (e.type === 'guard') {
        const g = (e as Extract<EngineEvent, { type: 'guard' }>).health
        guardNote = g.state === 'ok' ? '' : `  guard: ${g.address} ${g.state}`
      }
      const line = describe(e)
      if (line !== undefined) multi.log(`${line}\n`)
    },
    stop() {
      multi.stop()
    },
  }
}
