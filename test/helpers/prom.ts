/**
 * A strict reader of the Prometheus text exposition format (0.0.4), enough to check what
 * memdrain writes: every sample's metric has HELP and TYPE lines before it, label values are
 * quoted, values are numbers. Throws on anything else.
 */
export interface Sample {
  name: string
  labels: Record<string, string>
  value: number
}

export interface Exposition {
  samples: Sample[]
  types: Map<string, string>
  /** Samples of `name` whose labels include `labels`. */
  find(name: string, labels?: Record<string, string>): Sample[]
  /** The one sample of `name` with `labels` (throws when there is not exactly one). */
  value(name: string, labels?: Record<string, string>): number
  /** Sum of the samples of `name` whose labels include `labels`. */
  sum(name: string, labels?: Record<string, string>): number
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (-?(?:[0-9.e+-]+|Inf|NaN))$/
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/gy

export function parseExposition(text: string): Exposition {
  const samples: Sample[] = []
  const types = new Map<string, string>()
  const helps = new Set<string>()
  for (const line of text.split('\n')) {
    if (line === '') continue
    if (line.startsWith('# HELP ')) {
      helps.add(line.split(' ')[2]!)
      continue
    }
    if (line.startsWith('# TYPE ')) {
      const [, , name, type] = line.split(' ')
      types.set(name!, type!)
      continue
    }
    const m = SAMPLE.exec(line)
    if (m === null) throw new Error(`not an exposition line: ${line}`)
    const name = m[1]!
    if (!types.has(name) || !helps.has(name)) throw new Error(`${name} has no HELP/TYPE before its samples`)
    const labels: Record<string, string> = {}
    if (m[2] !== undefined && m[2] !== '') {
      LABEL.lastIndex = 0
      let consumed = 0
      for (let l = LABEL.exec(m[2]); l !== null; l = LABEL.exec(m[2])) {
        labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c))
        consumed = LABEL.lastIndex
      }
      if (consumed !== m[2].length) throw new Error(`bad labels in: ${line}`)
    }
    const value = Number(m[3])
    if (Number.isNaN(value) && m[3] !== 'NaN') throw new Error(`bad value in: ${line}`)
    samples.push({ name, labels, value })
  }
  const matches = (s: Sample, name: string, labels: Record<string, string>): boolean => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)
  const find = (name: string, labels: Record<string, string> = {}): Sample[] => samples.filter((s) => matches(s, name, labels))
  return {
    samples,
    types,
    find,
    value(name, labels = {}) {
      const found = find(name, labels)
      if (found.length !== 1) throw new Error(`${found.length} samples of ${name} ${JSON.stringify(labels)}`)
      return found[0]!.value
    },
    sum: (name, labels = {}) => find(name, labels).reduce((n, s) => n + s.value, 0),
  }
}
