/**
 * Real memcached clients run as short child processes (drivers in test/fixtures/clients/), for the
 * live conformance tests. Each driver writes COUNT typed values through its client, or reads them
 * back and compares value and type itself (see test/fixtures/clients/README.md).
 */
import { execFile, spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { REPO_ROOT } from './cli.js'

const DRIVERS = path.join(REPO_ROOT, 'test/fixtures/clients')

export interface ReadReport {
  hits: number
  misses: number
  mismatches: number
  examples: string[]
}

export interface LiveClient {
  /** The client and configuration, as the test names it. */
  name: string
  /** The memdrain strategy that reproduces it. */
  hash: string
  /** Why the client cannot run on this machine (undefined: it can); checked once. */
  missing(): string | undefined
  /** The command that runs the driver (compiling it first where needed, once per process). */
  command(mode: 'write' | 'read', servers: readonly string[], count: number, prefix: string): Promise<{ file: string; args: string[]; env?: NodeJS.ProcessEnv }>
}

function ok(cmd: string, args: string[], env?: NodeJS.ProcessEnv): boolean {
  const r = spawnSync(cmd, args, { stdio: 'ignore', timeout: 30_000, env: { ...process.env, ...env } })
  return r.status === 0
}

/** Debian's python3 (where python3-pylibmc & co. live), else the one on the PATH. */
const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3'

const argsOf = (mode: string, servers: readonly string[], count: number, prefix: string): string[] => [mode, servers.join(','), String(count), prefix]

function php(ext: string, script: string, name: string, hash: string, config: string): LiveClient {
  return {
    name,
    hash,
    missing: () => (ok('php', ['-r', `exit(extension_loaded("${ext}") ? 0 : 1);`]) ? undefined : `php with the ${ext} extension is not installed (Debian: php-cli php-${ext})`),
    command: async (mode, servers, count, prefix) => ({ file: 'php', args: [path.join(DRIVERS, script), ...argsOf(mode, servers, count, prefix), config] }),
  }
}

function python(module: string, pkg: string, name: string, hash: string, config: string): LiveClient {
  return {
    name,
    hash,
    missing: () => (ok(PYTHON, ['-c', `import ${module}`]) ? undefined : `python3 module ${module} is not installed (Debian: ${pkg})`),
    command: async (mode, servers, count, prefix) => ({ file: PYTHON, args: [path.join(DRIVERS, 'python-clients.py'), ...argsOf(mode, servers, count, prefix), config] }),
  }
}

let built: Promise<string> | undefined
/** A scratch directory for compiled drivers, shared by the process. */
function buildDir(): Promise<string> {
  built ??= Promise.resolve(mkdtempSync(path.join(tmpdir(), 'memdrain-live-')))
  return built
}

/** Removes the compiled drivers (call once the tests are done). */
export async function removeBuilds(): Promise<void> {
  if (built !== undefined) rmSync(await built, { recursive: true, force: true })
  built = undefined
}

function compileOnce(what: string, compile: (dir: string) => { cmd: string; args: string[]; env?: NodeJS.ProcessEnv }): () => Promise<string> {
  let done: Promise<string> | undefined
  return () => {
    done ??= buildDir().then(
      (dir) =>
        new Promise<string>((resolve, reject) => {
          const c = compile(dir)
          execFile(c.cmd, c.args, { env: { ...process.env, ...c.env }, timeout: 120_000 }, (err, _out, stderr) => (err ? reject(new Error(`building the ${what} driver failed: ${stderr}`)) : resolve(dir)))
        }),
    )
    return done
  }
}

const GOPATH = '/usr/share/gocode'
const goEnv = (dir: string): NodeJS.ProcessEnv => ({ GO111MODULE: 'off', GOPATH, GOFLAGS: '', GOCACHE: path.join(dir, 'go-cache') })
const buildGo = compileOnce('gomemcache', (dir) => ({ cmd: 'go', args: ['build', '-o', path.join(dir, 'gomemcache-driver'), path.join(DRIVERS, 'gomemcache.go')], env: goEnv(dir) }))
const SPY_JAR = '/usr/share/java/spymemcached.jar'
const buildJava = compileOnce('spymemcached', (dir) => ({ cmd: 'javac', args: ['-d', dir, '-cp', SPY_JAR, path.join(DRIVERS, 'SpyDriver.java')] }))

export const LIVE_CLIENTS: LiveClient[] = [
  php('memcached', 'php-memcached.php', 'php-memcached (OPT_LIBKETAMA_COMPATIBLE)', 'php-memcached-libketama', 'libketama'),
  php('memcache', 'php-memcache.php', 'php-memcache (pecl memcache, consistent crc32: the defaults)', 'php-memcache-consistent-crc32', 'consistent'),
  python('pylibmc', 'python3-pylibmc', 'pylibmc (ketama)', 'pylibmc-ketama', 'pylibmc-ketama'),
  python('pymemcache', 'python3-pymemcache', 'pymemcache HashClient (rendezvous, the default)', 'pymemcache-rendezvous', 'pymemcache'),
  python('memcache', 'python3-memcache', 'python-memcached (Django MemcachedCache)', 'python-memcached', 'python-memcached'),
  {
    name: 'Ruby Dalli (default ring)',
    hash: 'ruby-dalli',
    missing: () => (ok('ruby', ['-e', 'require "dalli"']) ? undefined : 'ruby with Dalli is not installed (Debian: ruby ruby-dalli)'),
    command: async (mode, servers, count, prefix) => ({ file: 'ruby', args: [path.join(DRIVERS, 'ruby-dalli.rb'), ...argsOf(mode, servers, count, prefix)] }),
  },
  {
    name: 'Go gomemcache (memcache.New)',
    hash: 'go-gomemcache',
    missing: () =>
      ok('go', ['version']) && existsSync(path.join(GOPATH, 'src/github.com/bradfitz/gomemcache/memcache'))
        ? undefined
        : 'go or gomemcache is not installed (Debian: golang-go golang-github-bradfitz-gomemcache-dev)',
    command: async (mode, servers, count, prefix) => ({ file: path.join(await buildGo(), 'gomemcache-driver'), args: argsOf(mode, servers, count, prefix) }),
  },
  {
    name: 'Java spymemcached (KetamaConnectionFactory)',
    hash: 'spymemcached-ketama',
    missing: () => (ok('javac', ['-version']) && existsSync(SPY_JAR) ? undefined : 'javac or spymemcached is not installed (Debian: default-jdk-headless libspymemcached-java)'),
    command: async (mode, servers, count, prefix) => {
      const dir = await buildJava()
      return { file: 'java', args: ['-cp', `${dir}:${SPY_JAR}`, 'SpyDriver', ...argsOf(mode, servers, count, prefix)] }
    },
  },
  {
    name: 'memjs (Node.js)',
    hash: 'memjs',
    missing: () => undefined,
    command: async (mode, servers, count, prefix) => ({ file: process.execPath, args: [path.join(DRIVERS, 'memjs.mjs'), ...argsOf(mode, servers, count, prefix)] }),
  },
]

/** The pymemcache driver in front of one address (a proxy): what the twemproxy tests write and read with. */
export const PROXY_CLIENT: LiveClient = python('pymemcache', 'python3-pymemcache', 'pymemcache through a proxy', '', 'proxy')

/** Runs the driver and returns its one JSON line. */
export async function runClient<T>(client: LiveClient, mode: 'write' | 'read', servers: readonly string[], count: number, prefix: string): Promise<T> {
  const { file, args, env } = await client.command(mode, servers, count, prefix)
  return new Promise<T>((resolve, reject) => {
    execFile(file, args, { cwd: REPO_ROOT, env: { ...process.env, ...env }, timeout: 90_000, maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`${client.name} ${mode} failed: ${err.message}\n${stderr}`))
      try {
        resolve(JSON.parse(stdout.trim().split('\n').pop()!) as T)
      } catch {
        reject(new Error(`${client.name} ${mode}: not one JSON line:\n${stdout}\n${stderr}`))
      }
    })
  })
}

/** Key i of a driver (the same formula in every driver). */
export function driverKey(prefix: string, i: number): string {
  return `${prefix}:${i}` + '-'.repeat(i % 17)
}
