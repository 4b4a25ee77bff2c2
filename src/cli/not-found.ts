import { Errors, toConfiguredId, type Hook } from '@oclif/core'
import levenshtein from 'fast-levenshtein'
// @oclif/plugin-not-found: its hook asks "Did you mean …?" on a terminal and runs the answer.
import pluginNotFound from '@oclif/plugin-not-found'
import { ExitCode } from '../core/errors.js'

/** The known command nearest to what was typed, by edit distance (as @oclif/plugin-not-found matches). */
function closest(typed: string, ids: string[]): string {
  let best = ''
  let bestDistance = Infinity
  for (const id of ids) {
    const d = levenshtein.get(typed, id)
    if (d < bestDistance) [best, bestDistance] = [id, d]
  }
  return best
}

/**
 * An unknown command. @oclif/plugin-not-found's hook suggests only on a terminal and knows no
 * --json: on a terminal (without --json) it asks, as the plugin does, whether to run the
 * suggestion; otherwise the suggestion is in the message, and under --json in one JSON error
 * document on stdout. Either way an unknown command exits 2 (usage) like any usage error.
 */
const hook: Hook<'command_not_found'> = async function (opts) {
  const visible = opts.config.commands.filter((c) => c.hidden !== true)
  const ids = [...visible.map((c) => c.id), ...visible.flatMap((c) => c.aliases)]
  const suggestion = ids.length === 0 ? '' : closest(opts.id, ids)
  // With a space as the topic separator, oclif folds the arguments into the id ("drian x" for
  // `memdrain drian x`): name only as many words as the suggestion has.
  const words = suggestion === '' ? 1 : suggestion.split(':').length
  const typed = toConfiguredId(opts.id.split(':').slice(0, words).join(':'), opts.config)
  const readable = toConfiguredId(suggestion, opts.config)
  const argv = opts.argv ?? []
  const message = `"${typed}" is not a ${opts.config.bin} command.${suggestion !== '' ? ` Did you mean "${readable}"?` : ''}`
  const suggestions = [...(suggestion !== '' ? [`${opts.config.bin} ${readable}`] : []), `${opts.config.bin} help: the list of commands`]
  if (argv.includes('--json')) {
    const error = { code: 'COMMAND_NOT_FOUND', message, suggestions }
    process.stdout.write(JSON.stringify({ status: ExitCode.usage, error, warnings: [] }, null, 2) + '\n')
    Errors.exit(ExitCode.usage)
  }
  if (suggestion !== '' && process.stdin.isTTY === true && process.stderr.isTTY === true) {
    try {
      return await pluginNotFound.call(this, opts)
    } catch (err) {
      // The plugin's own "not found" (exit 127) after a "no": ours below, with exit 2.
      if (!(err instanceof Errors.CLIError) || err.oclif.exit !== 127) throw err
      Errors.error(`Run "${opts.config.bin} help" for the list of commands.`, { exit: ExitCode.usage })
    }
  }
  Errors.error(`${message}\nRun "${opts.config.bin} help" for the list of commands.`, { exit: ExitCode.usage })
}

export default hook
