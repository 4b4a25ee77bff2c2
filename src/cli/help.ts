import { stripVTControlCharacters } from 'node:util'
import { CommandHelp, Help, type Command } from '@oclif/core'
import { EXIT_CODES } from './exit-codes.js'

/** The environment variables memdrain reads, and those it gives the switch command, for the root help (keep in step with src/core). */
export const ENVIRONMENT: ReadonlyArray<readonly [string, string]> = [
  ['MEMDRAIN_POOL', 'The pool, as for --pool (default ./memdrain.json).'],
  ['MEMDRAIN_AUTH_FILE', 'memcached ASCII auth (-Y): a file whose first line is user:password.'],
  ['MEMDRAIN_MEMCACHED_USERNAME', 'memcached ASCII auth user (with ..._PASSWORD).'],
  ['MEMDRAIN_MEMCACHED_PASSWORD', 'memcached ASCII auth password.'],
  ['MEMDRAIN_TLS=1', 'Connect to memcached with TLS (memcached -Z).'],
  ['MEMDRAIN_TLS_CA', 'PEM file: the CA that signed the servers\' certificates.'],
  ['MEMDRAIN_TLS_CERT', 'PEM file: a client certificate (with MEMDRAIN_TLS_KEY).'],
  ['MEMDRAIN_TLS_KEY', 'PEM file: the client certificate\'s key.'],
  ['MEMDRAIN_TLS_INSECURE=1', 'Do not verify the memcached servers\' certificates.'],
  ['MEMDRAIN_ETCD_USERNAME', 'etcd user for an etcd:// pool (with ..._PASSWORD).'],
  ['MEMDRAIN_ETCD_PASSWORD', 'etcd password.'],
  ['MEMDRAIN_ETCD_CA', 'PEM file: etcd over TLS, verified with this CA.'],
  ['MEMDRAIN_ETCD_CERT', 'PEM file: etcd client certificate (with ..._KEY).'],
  ['MEMDRAIN_ETCD_KEY', 'PEM file: the etcd client certificate\'s key.'],
  ['MEMDRAIN_ETCD_TLS=1', 'etcd over TLS, verified with the system CAs.'],
  ['NO_COLOR=1', 'No colors (same as --no-color).'],
  ['MEMDRAIN_SOURCE', 'Given to --switch-command: the servers keys were copied from.'],
  ['MEMDRAIN_REMOVED', 'Given to --switch-command: the servers leaving the pool.'],
  ['MEMDRAIN_DESTINATIONS', 'Given to --switch-command: the new pool\'s active servers.'],
  ['MEMDRAIN_NEW_POOL', 'Given to --switch-command: a pool file of the new pool.'],
  ['MEMDRAIN_NEW_SERVERS', 'Given to --switch-command: host:port[=weight],… of the new pool.'],
  ['MEMDRAIN_NEW_CONFIG', 'Given to --switch-command: the imported config, rewritten.'],
  ['MEMDRAIN_CONFIG_FORMAT', 'Given to --switch-command: twemproxy or mcrouter.'],
]

const HEADER = /^[A-Z][A-Z -]+$/

/**
 * Descriptions are written as paragraphs broken at ~100 columns for the source. oclif wraps each
 * line on its own, so on an 80-column terminal every line would break again into a long and a
 * short one. Paragraphs of prose are joined here and wrapped once, at the terminal's width;
 * indented lines (lists, tables) and titled blocks (EXIT CODES) keep their layout.
 */
export function reflow(text: string): string {
  return text
    .split(/\n\s*\n/)
    .map((para) => {
      const lines = para.split('\n')
      const prose = lines.every((l) => l !== '' && !/^\s/.test(l) && !HEADER.test(l.trim()))
      return prose ? lines.map((l) => l.trim()).join(' ') : para
    })
    .join('\n\n')
}

/**
 * oclif breaks a long example command with a shell continuation (" \\") only when the example
 * has a description; ours are plain commands, broken here the same way so that each one stays
 * copy-pastable within the terminal's width (80 columns when the output is not a terminal).
 */
class MemdrainCommandHelp extends CommandHelp {
  protected override examples(examples: Command.Example[] | string | undefined): string | undefined {
    const body = super.examples(examples)
    if (body === undefined) return undefined
    // The EXAMPLES section indents by 2; continuation lines by 4 more.
    const width = this.opts.maxWidth - 2
    return body
      .split('\n')
      .map((line) => (line.length <= width || /^\s/.test(line) ? line : this.wrap(line, 6).split('\n').map((l) => l.trim()).join(' \\\n    ')))
      .join('\n')
  }
}

/**
 * oclif's help, plus what the root help of a CLI that moves production data must also say: the
 * environment variables it reads and the exit codes scripts rely on, laid out by oclif's own
 * renderList so they wrap at the terminal's width like the rest.
 */
export default class MemdrainHelp extends Help {
  protected override CommandHelpClass = MemdrainCommandHelp

  protected override async showRootHelp(): Promise<void> {
    await super.showRootHelp()
    this.log('')
    this.log(this.section('ENVIRONMENT', this.renderList(ENVIRONMENT.map(([k, v]) => [k, v]), { indentation: 2 })))
    this.log('')
    this.log(this.section('EXIT CODES', this.renderList(EXIT_CODES.map(([k, v]) => [String(k), v]), { indentation: 2 })))
  }

  /** The summary line and the root description are the only lines oclif does not wrap. */
  protected override log(...args: string[]): void {
    const fit = (line: string): string => (!/^\s/.test(line) && stripVTControlCharacters(line).length > this.opts.maxWidth ? this.wrap(line) : line)
    super.log(...args.map((a) => a.split('\n').map(fit).join('\n')))
  }

  protected override getCommandHelpClass(command: Command.Loadable) {
    const description = command.description === undefined ? undefined : reflow(command.description)
    return new this.CommandHelpClass({ ...command, description }, this.config, this.opts)
  }
}
