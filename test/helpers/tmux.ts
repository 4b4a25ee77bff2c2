import { execFileSync, spawnSync } from 'node:child_process'
import { setTimeout as sleep } from 'node:timers/promises'

/** Why terminal tests cannot run here, or undefined when tmux is installed. */
export function tmuxMissing(): string | undefined {
  return spawnSync('sh', ['-c', 'command -v tmux'], { encoding: 'utf8' }).status === 0 ? undefined : 'tmux is not installed (scripts/setup.sh installs it)'
}

const quote = (s: string): string => `'${s.replaceAll("'", `'\\''`)}'`

/**
 * A command in a real terminal of a given size: a tmux server of our own (its own socket, no
 * user configuration), so tests see what an operator sees and can type keys (Enter, Ctrl-C).
 * The command's exit code is printed as `EXIT=N` when it ends.
 */
export class Terminal {
  private readonly socket = `memdrain-test-${process.pid}-${Math.random().toString(36).slice(2, 8)}`
  private raw: string | undefined

  constructor(
    readonly command: string[],
    readonly opts: { cols?: number; rows?: number; env?: Record<string, string>; cwd?: string; rawOutput?: string } = {},
  ) {}

  private tmux(...args: string[]): string {
    return execFileSync('tmux', ['-L', this.socket, '-f', '/dev/null', ...args], { encoding: 'utf8' })
  }

  start(): this {
    // A person's terminal: CI (set when the suite runs under CI) would make chalk draw no colors.
    const env = Object.entries(this.opts.env ?? {}).map(([k, v]) => `${k}=${quote(v)}`)
    const line = `cd ${quote(this.opts.cwd ?? process.cwd())} && env -u CI ${env.join(' ')} ${this.command.map(quote).join(' ')}; echo "EXIT=$?"; sleep 600`
    this.tmux('new-session', '-d', '-s', 'test', '-x', String(this.opts.cols ?? 80), '-y', String(this.opts.rows ?? 30), line)
    // The raw bytes the program writes (escape codes included), when asked for.
    if (this.opts.rawOutput !== undefined) {
      this.raw = this.opts.rawOutput
      this.tmux('pipe-pane', '-o', '-t', 'test', `cat >> ${quote(this.raw)}`)
    }
    return this
  }

  /** The screen, wrapped lines joined (-J): a line longer than the width was wrapped by the terminal. */
  screen(): string {
    return this.tmux('capture-pane', '-p', '-J', '-S', '-200', '-t', 'test')
  }

  keys(...keys: string[]): void {
    this.tmux('send-keys', '-t', 'test', ...keys)
  }

  async waitFor(re: RegExp, timeoutMs = 20_000): Promise<string> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const s = this.screen()
      if (re.test(s)) return s
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${re} on the terminal:\n${s}`)
      await sleep(100)
    }
  }

  /** Waits for the command to end; its exit code and the screen. */
  async exit(timeoutMs = 30_000): Promise<{ code: number; screen: string }> {
    const screen = await this.waitFor(/^EXIT=\d+$/m, timeoutMs)
    return { code: Number(/^EXIT=(\d+)$/m.exec(screen)![1]), screen }
  }

  stop(): void {
    try {
      this.tmux('kill-server')
    } catch {
      // already gone
    }
  }
}
