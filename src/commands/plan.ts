import Drain from './drain.js'

/** `memdrain plan SERVER` is `memdrain drain SERVER --dry-run`: same flags, same core, writes nothing. */
export default class Plan extends Drain {
  static override summary = 'Plan a drain without changing anything: keys and bytes per destination, room check, estimated duration.'
  static override examples = ['<%= config.bin %> plan 10.0.0.3:11211', '<%= config.bin %> plan 10.0.0.3:11211 --rate 5000 --json']

  override async run(): Promise<Awaited<ReturnType<Drain['run']>>> {
    if (!this.argv.includes('--dry-run')) this.argv.push('--dry-run')
    return super.run()
  }
}
