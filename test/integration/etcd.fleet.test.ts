/**
 * A fleet on an etcd pool: two application "hosts" (child processes, each a PoolClient from
 * PoolClient.fromPoolUrl) follow a mark and a drain run from the CLI; the time from the mark to
 * every host switching is measured and printed. Their lazy moves are summed from etcd into the
 * drain's figures. With etcd stopped, the hosts keep their topology and say so; when it is back
 * they follow changes again.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcessByStdio } from 'node:child_process'
import type { Readable, Writable } from 'node:stream'
import { createInterface } from 'node:readline'
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { PoolClient } from '../../src/core/client/index.js'
import { EtcdPoolStore } from '../../src/core/pool/etcd-store.js'
import { markServer } from '../../src/core/pool/mark.js'
import { poolPlacement } from '../../src/core/pool/placement.js'
import { withServer } from '../../src/core/pool/model.js'
import { runCli, REPO_ROOT } from '../helpers/cli.js'
import { startEtcd, type EtcdServer } from '../helpers/etcd.js'
import { startMemcached, type MemcachedServer } from '../helpers/memcached.js'

interface HostEvent {
  type: string
  at: number
  pid: number
  [k: string]: unknown
}

class Host {
  readonly events: HostEvent[] = []
  private waiters: (() => void)[] = []
  constructor(readonly child: ChildProcessByStdio<Writable, Readable, null>) {
    createInterface({ input: child.stdout }).on('line', (line) => {
      try {
        this.events.push(JSON.parse(line) as HostEvent)
      } catch {
        return
      }
      for (const w of this.waiters.splice(0)) w()
    })
  }

  static start(url: string): Host {
    return new Host(spawn(process.execPath, ['--import', 'tsx', 'test/integration/etcd.host.fixture.ts', url], { cwd: REPO_ROOT, stdio: ['pipe', 'pipe', 'inherit'] }))
  }

  /** The first event after index `from` that matches, waiting up to `ms`. */
  async next(match: (e: HostEvent) => boolean, ms: number, from = 0): Promise<HostEvent> {
    const deadline = Date.now() + ms
    for (;;) {
      const found = this.events.slice(from).find(match)
      if (found !== undefined) return found
      if (Date.now() > deadline) throw new Error(`host ${this.child.pid}: no matching event within ${ms} ms; got ${JSON.stringify(this.events.slice(from))}`)
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve)
        setTimeout(resolve, 100)
      })
    }
  }

  send(line: string): void {
    this.child.stdin.write(line + '\n')
  }
}

describe('a fleet on an etcd pool', () => {
  let etcd: EtcdServer
  let servers: MemcachedServer[] = []
  let hosts: Host[] = []
  let url: string
  let dir: string
  const N = 300

  before(async () => {
    etcd = await startEtcd()
    servers = await Promise.all([0, 1, 2].map(() => startMemcached()))
    dir = mkdtempSync(path.join(tmpdir(), 'memdrain-fleet-'))
    url = etcd.poolUrl('/memdrain/fleet')
  })
  after(async () => {
    for (const h of hosts) if (h.child.exitCode === null) h.child.kill('SIGKILL')
    await Promise.all(servers.map((s) => s.kill()))
    await etcd.remove()
    rmSync(dir, { recursive: true, force: true })
  })

  it('hosts follow mark and drain within a second; their moves count in the drain; etcd down keeps the topology', async () => {
    const file = path.join(dir, 'memdrain.json')
    writeFileSync(file, JSON.stringify({ hash: 'php-memcached-libketama', clients: 'pool-aware', servers: servers.map((s) => ({ address: s.address })) }))
    const pushed = await runCli(['pool', 'push', file, '--pool', url, '--json'])
    assert.equal(pushed.code, 0, pushed.stdout + pushed.stderr)

    // Data written by a client of the full pool; the keys owned by the server to drain are counted.
    const writer = await PoolClient.fromPoolUrl(url, { watch: false, report: false })
    for (let i = 0; i < N; i++) await writer.set(`fleet${i}`, `v${i}`)
    const drained = servers[2]!.address
    const pp = poolPlacement(writer.pool)
    let onDrained = 0
    for (let i = 0; i < N; i++) if (pp.servers[pp.placement.owner(Buffer.from(`fleet${i}`))]!.address === drained) onDrained++
    assert.ok(onDrained > 30, `only ${onDrained} keys on ${drained}`)
    await writer.close()

    hosts = [Host.start(url), Host.start(url)]
    await Promise.all(hosts.map((h) => h.next((e) => e.type === 'ready', 20_000)))

    // 1. mark → every host switches. Timed from just before the mark (the library call the CLI makes).
    const store = new EtcdPoolStore(url)
    const marks: number[] = []
    for (const [round, state] of [[1, 'deactivating'], [2, 'active'], [3, 'deactivating']] as const) {
      const from = hosts.map((h) => h.events.length)
      const t0 = Date.now()
      await markServer(store, drained, state)
      const seen = await Promise.all(
        hosts.map((h, i) => h.next((e) => e.type === 'topology' && (e.deactivating as string[]).includes(drained) === (state === 'deactivating'), 5000, from[i])),
      )
      const lag = Math.max(...seen.map((e) => e.at)) - t0
      marks.push(lag)
      console.log(`# mark ${drained} ${state} (round ${round}) → both hosts switched after ${lag} ms`)
    }
    assert.ok(Math.max(...marks) < 1000, `mark → switch took ${Math.max(...marks)} ms (should be under 1 s)`)

    // 2. The hosts read every key: those on the deactivating server are moved by them (lazy migration).
    hosts.forEach((h, i) => h.send(`read fleet ${N} ${i}`))
    const reads = await Promise.all(hosts.map((h) => h.next((e) => e.type === 'read', 20_000)))
    assert.equal(reads.reduce((a, e) => a + (e.hits as number), 0), N, 'every key is a hit through the hosts')
    const movedByHosts = reads.reduce((a, e) => a + (e.migrated as number), 0)
    assert.equal(movedByHosts, onDrained)

    // 3. Drain from "another host" (the CLI): the hosts' moves are summed from etcd into its figures.
    const before = hosts.map((h) => h.events.length)
    const t0 = Date.now()
    const drain = await runCli(['drain', drained, '--pool', url, '--handoff', 'move', '--force', '--client-grace', '0', '--rate', '0', '--yes', '--json', '--spool-dir', dir])
    const t1 = Date.now()
    assert.equal(drain.code, 0, drain.stdout + drain.stderr)
    assert.equal(drain.json.result.state, 'removed')
    assert.equal(drain.json.result.movedByClients, onDrained)
    const removedSeen = await Promise.all(hosts.map((h, i) => h.next((e) => e.type === 'topology' && !(e.active as string[]).includes(drained) && !(e.deactivating as string[]).includes(drained), 5000, before[i])))
    console.log(`# drain exited after ${t1 - t0} ms; hosts saw ${drained} removed ${Math.max(...removedSeen.map((e) => e.at)) - t1} ms after it exited`)
    const status = await runCli(['status', '--pool', url, '--json'])
    assert.equal(status.code, 0, status.stdout + status.stderr)
    const st = (status.json.result.servers as { address: string; state: string; transition?: { movedByClients: number } }[]).find((s) => s.address === drained)!
    assert.equal(st.state, 'removed')
    assert.equal(st.transition?.movedByClients, onDrained)

    // 4. etcd stops: the hosts say so and keep serving with the topology they have.
    const downFrom = hosts.map((h) => h.events.length)
    const revisionBefore = String(removedSeen[0]!.revision)
    await etcd.kill()
    const unreachable = await Promise.all(hosts.map((h, i) => h.next((e) => e.type === 'pool-unreachable', 5000, downFrom[i])))
    for (const e of unreachable) assert.equal(e.revision, revisionBefore)
    hosts.forEach((h, i) => h.send(`read fleet ${N} ${i}`))
    const readsDown = await Promise.all(hosts.map((h, i) => h.next((e) => e.type === 'read', 20_000, downFrom[i])))
    assert.equal(readsDown.reduce((a, e) => a + (e.hits as number), 0), N, 'reads still hit with etcd down')

    // 5. etcd is back: the hosts say so and follow the next change.
    await etcd.start()
    await Promise.all(hosts.map((h, i) => h.next((e) => e.type === 'pool-reachable', 10_000, downFrom[i])))
    const snap = await store.load()
    const t2 = Date.now()
    await store.save(withServer(snap.pool, servers[0]!.address, (s) => ({ ...s, weight: 2 })), snap.revision)
    const after = await Promise.all(hosts.map((h, i) => h.next((e) => e.type === 'topology' && Number(e.revision) > Number(revisionBefore), 5000, downFrom[i])))
    console.log(`# after etcd came back, a change reached both hosts in ${Math.max(...after.map((e) => e.at)) - t2} ms`)
    store.close()
    for (const h of hosts) h.send('exit')
    await Promise.all(hosts.map((h) => h.next((e) => e.type === 'closed', 10_000)))
    await sleep(10)
  })
})
