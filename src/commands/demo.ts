import { Flags } from '@oclif/core'
import path from 'node:path'
import { invocation, shellQuote } from '../cli/invocation.js'
import { BaseCommand, EXIT_CODES_HELP, usageError } from '../cli/base-command.js'
import { HASH_NAMES, isHashName } from '../core/placement/registry.js'
import { DEFAULT_POOL_FILE } from '../core/pool/resolve.js'
import { probeServer, type ServerStatus } from '../core/inspect/server-status.js'
import { formatBytes, formatCount } from '../ui/format.js'
import { paint } from '../ui/style.js'

export interface DemoResult {
  action: 'started' | 'stopped' | 'verified'
  verification?: { keys: number; atOwner: number; missing: number; wrongValue: number; elsewhere: number }
  pool: string
  hash?: string
  servers: { address: string; pid: number }[] | number[]
  keys?: number
  bytes?: number
  status?: ServerStatus[]
  next?: string[]
}

export default class Demo extends BaseCommand<DemoResult> {
  static override summary = 'Start a local demo pool of real memcached servers, loaded with keys, to try memdrain on.'
  static override description = `Starts --servers memcached processes on free loopback ports (the Debian package memcached must be
installed), writes a pool file for them, loads --keys keys with varied sizes, client flags and TTLs
(none, hours, over 30 days) through the pool's placement, and shows the pool's status.
Stop the servers with \`memdrain demo --stop\` (only the processes the demo started are stopped).

${EXIT_CODES_HELP}`
  static override examples = [
    '<%= config.bin %> demo',
    '<%= config.bin %> demo --keys 100000 --hash memjs --pool /tmp/demo.json',
    '<%= config.bin %> demo --stop',
  ]
  static override flags = {
    pool: Flags.string({ description: 'Pool file to write (default: $MEMDRAIN_POOL, else ./memdrain.json).' }),
    servers: Flags.integer({ description: 'How many memcached servers to start.', default: 4, min: 2, max: 32 }),
    keys: Flags.integer({ description: 'How many keys to load.', default: 20000, min: 0 }),
    memory: Flags.integer({ description: 'Memory per server, in MiB (memcached -m).', default: 64, min: 8 }),
    hash: Flags.string({ description: `Placement strategy of the demo pool (one of \`memdrain hashes\`).`, default: 'php-memcached-libketama' }),
    force: Flags.boolean({ description: 'Replace a running demo, or overwrite an existing pool file.' }),
    stop: Flags.boolean({ description: 'Stop the demo servers started for this pool file.' }),
    verify: Flags.boolean({ description: 'Check that every demo key is at the owner the pool\'s client would ask, with its value (exit 68 if not).' }),
  }

  async run(): Promise<DemoResult> {
    const { flags } = await this.parse(Demo)
    const poolFile = path.resolve(flags.pool ?? process.env.MEMDRAIN_POOL ?? DEFAULT_POOL_FILE)
    const { startDemoPool, stopDemo, loadDemoKeys, verifyDemoKeys } = await import('../core/local/demo.js')
    if (flags.verify) {
      const { FilePoolStore } = await import('../core/pool/store.js')
      const { pool } = await new FilePoolStore(poolFile).load()
      const v = await verifyDemoKeys(pool, flags.keys)
      if (v.atOwner !== v.keys) this.status = 68
      if (!this.jsonEnabled()) {
        this.log(`${formatCount(v.atOwner)} of ${formatCount(v.keys)} demo keys are at their owner with their value; ${formatCount(v.missing)} missing, ${formatCount(v.elsewhere)} on another server, ${formatCount(v.wrongValue)} with another value`)
      }
      return { action: 'verified', pool: poolFile, servers: [], verification: v }
    }
    if (flags.stop) {
      const { stopped } = await stopDemo(poolFile)
      if (!this.jsonEnabled()) this.log(`Stopped ${stopped.length} memcached process(es): ${stopped.join(', ') || 'none were still running'}`)
      return { action: 'stopped', pool: poolFile, servers: stopped }
    }
    if (!isHashName(flags.hash)) throw usageError(`unknown --hash "${flags.hash}"`, [`Use one of: ${HASH_NAMES.join(', ')}`])
    this.info(`Starting ${flags.servers} memcached servers on loopback…`)
    const { pool, state } = await startDemoPool({ poolFile, servers: flags.servers, memoryMb: flags.memory, hash: flags.hash, force: flags.force })
    this.info(`Wrote ${poolFile}; loading ${formatCount(flags.keys)} keys…`)
    const loaded = await loadDemoKeys(pool, flags.keys)
    const status = await Promise.all(pool.servers.map((s) => probeServer(s)))
    const first = pool.servers[0]!.address
    // Printed to be pasted: the program as it was run, a --pool that finds the file from here,
    // and keys the demo did load.
    const { demoKey } = await import('../core/local/demo.js')
    const rel = path.relative(process.cwd(), poolFile) || poolFile
    const poolArg = rel === DEFAULT_POOL_FILE && process.env.MEMDRAIN_POOL === undefined ? '' : ` --pool ${shellQuote(rel)}`
    const me = invocation(this.config.bin)
    const sample = [0, 1, 2, 3, 4, 5, 6, 7].map((i) => demoKey(i).key.toString('utf8')).filter((k) => k.length < 30).slice(0, 3)
    const next = [
      `${me} status${poolArg}`,
      `${me} locate${poolArg} ${sample.map(shellQuote).join(' ')}`,
      `${me} plan ${first}${poolArg}`,
      `${me} drain ${first}${poolArg} --yes`,
      `${me} demo --stop${poolArg}`,
    ]
    if (!this.jsonEnabled()) {
      this.log(`${paint.ok('Demo pool ready')}: ${state.servers.length} servers, hash ${pool.hash}, ${formatCount(loaded.keys)} keys (${formatBytes(loaded.bytes)})`)
      for (const s of status) this.log(`  ${s.address}  ${formatCount(s.items)} items  ${formatBytes(s.bytes)} used of ${formatBytes(s.limitBytes)}`)
      this.log('\nTry next:')
      for (const n of next) this.log(`  ${n}`)
    }
    return {
      action: 'started',
      pool: poolFile,
      hash: pool.hash,
      servers: state.servers.map((s) => ({ address: s.address, pid: s.pid })),
      keys: loaded.keys,
      bytes: loaded.bytes,
      status,
      next,
    }
  }
}
