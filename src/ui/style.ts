import chalk, { Chalk } from 'chalk'

/**
 * The only place colors are decided. chalk reads FORCE_COLOR and --no-color but not NO_COLOR
 * (https://no-color.org: present and not empty means no color), so that is done here; stderr
 * output gets colors only on a terminal. `useColor(false)` is --no-color.
 */
if (process.env.NO_COLOR !== undefined && process.env.NO_COLOR !== '') chalk.level = 0
const stderrChalk = new Chalk({ level: process.stderr.isTTY && process.env.TERM !== 'dumb' ? chalk.level : 0 })

export function useColor(enabled: boolean): void {
  if (enabled) return
  chalk.level = 0
  stderrChalk.level = 0
}

export const paint = {
  ok: (s: string): string => chalk.green(s),
  warn: (s: string): string => chalk.yellow(s),
  bad: (s: string): string => chalk.red(s),
  dim: (s: string): string => chalk.dim(s),
  bold: (s: string): string => chalk.bold(s),
}

export const paintErr = {
  warn: (s: string): string => stderrChalk.yellow(s),
  bad: (s: string): string => stderrChalk.red(s),
  bold: (s: string): string => stderrChalk.bold(s),
  dim: (s: string): string => stderrChalk.dim(s),
}

// eslint-disable-next-line no-control-regex
const ANSI = /\u001b\[[0-9;]*m/g
export function visibleLength(s: string): number {
  return s.replace(ANSI, '').length
}

/** A plain aligned table: header row, then rows; cells may carry colors. */
export function renderTable(headers: string[], rows: string[][], rightAligned: ReadonlySet<number> = new Set()): string {
  const widths = headers.map((h, i) => Math.max(visibleLength(h), ...rows.map((r) => visibleLength(r[i] ?? ''))))
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => {
        const pad = ' '.repeat((widths[i] ?? 0) - visibleLength(c))
        return rightAligned.has(i) ? pad + c : c + pad
      })
      .join('  ')
      .trimEnd()
  return [line(headers.map((h) => chalk.bold(h))), ...rows.map(line)].join('\n')
}
