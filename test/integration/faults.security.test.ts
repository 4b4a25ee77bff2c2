import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { MetaConnection, parseAddress } from '../../src/core/protocol/index.js'
import { openSocket, transportSettings } from '../../src/core/protocol/transport.js'
import { KeySpool } from '../../src/core/engine/spool.js'
import { startMemcached, rawCommand, type MemcachedServer } from '../helpers/memcached.js'
import { runCli } from '../helpers/cli.js'
import { rejectsWithCode } from '../helpers/assert.js'

/**
 * Security: memcached ASCII auth (-Y), SASL-only servers (-S) refused with the reason, TLS (-Z),
 * credentials never printed, pool file and spool user-only. Real memcached, the built CLI.
 */

const USER = 'memdrain-op'
const PASSWORD = 'pw-Zq81-never-print-me'

function authedEnv(): Record<string, string> {
  return { MEMDRAIN_MEMCACHED_USERNAME: USER, MEMDRAIN_MEMCACHED_PASSWORD: PASSWORD }
}

async function authedSet(server: MemcachedServer, keys: number): Promise<void> {
  let text = `set a 0 0 ${USER.length + 1 + PASSWORD.length}\r\n${USER} ${PASSWORD}\r\n`
  for (let i = 0; i < keys; i++) text += `set sec:${i} ${i} 0 8\r\nvalue-${String(i % 100).padStart(2, '0')}\r\n`
  const reply = await rawCommand(server.address, text, { idleMs: 300 })
  assert.equal((reply.match(/STORED/g) ?? []).length, keys + 1, reply.slice(0, 200))
}

function assertNoSecret(...texts: string[]): void {
  for (const t of texts) assert.ok(!t.includes(PASSWORD), `the password leaked into output: ${t.slice(0, 300)}`)
}

describe('security', () => {
  let dir: string
  const servers: MemcachedServer[] = []
  before(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'memdrain-sec-'))
    writeFileSync(path.join(dir, 'auth'), `${USER}:${PASSWORD}\n`, { mode: 0o600 })
  })
  after(async () => {
    await Promise.all(servers.map((s) => s.kill()))
    rmSync(dir, { recursive: true, force: true })
  })

  it('ASCII auth (-Y): refused without credentials (3, AUTH_REQUIRED), wrong ones (3, AUTH_FAILED), drains with env or --auth-file; the password is never printed', async () => {
    const a = await startMemcached({ extraArgs: ['-Y', path.join(dir, 'auth')] })
    const b = await startMemcached({ extraArgs: ['-Y', path.join(dir, 'auth')] })
    const c = await startMemcached({ extraArgs: ['-Y', path.join(dir, 'auth')] })
    servers.push(a, b, c)
    const poolFile = path.join(dir, 'auth-pool.json')
    writeFileSync(poolFile, JSON.stringify({ hash: 'memjs', clients: 'pool-aware', servers: [a, b, c].map((s) => ({ address: s.address })) }))
    const args = ['drain', a.address, '--pool', poolFile, '--yes', '--json', '--rate', '0', '--client-grace', '0', '--spool-dir', path.join(dir, 'spool')]
    await authedSet(a, 200)

    const none = await runCli(args)
    assert.equal(none.code, 3, none.stdout + none.stderr)
    assert.equal(none.json.error.code, 'AUTH_REQUIRED')
    assert.match(none.json.error.message, /requires authentication/)
    assert.match(none.json.error.suggestions.join(' '), /MEMDRAIN_MEMCACHED_USERNAME/)

    const wrong = await runCli(args, { env: { MEMDRAIN_MEMCACHED_USERNAME: USER, MEMDRAIN_MEMCACHED_PASSWORD: 'not-it' } })
    assert.equal(wrong.code, 3, wrong.stdout + wrong.stderr)
    assert.equal(wrong.json.error.code, 'AUTH_FAILED')
    assert.ok(!wrong.stdout.includes('not-it') && !wrong.stderr.includes('not-it'), 'a wrong password is not printed either')

    const half = await runCli(args, { env: { MEMDRAIN_MEMCACHED_USERNAME: USER } })
    assert.equal(half.code, 2)
    assert.match(half.json.error.message, /both MEMDRAIN_MEMCACHED_USERNAME and MEMDRAIN_MEMCACHED_PASSWORD/)

    const ok = await runCli(args, { env: authedEnv() })
    assertNoSecret(ok.stdout, ok.stderr)
    assert.equal(ok.code, 0, ok.stdout + ok.stderr)
    assert.equal(ok.json.result.state, 'removed')
    assert.equal(ok.json.result.moved, 200)

    // --auth-file, and a human (non-JSON) run: still nothing printed.
    const status = await runCli(['status', '--pool', poolFile, '--auth-file', path.join(dir, 'auth'), '--json'])
    assertNoSecret(status.stdout, status.stderr)
    assert.equal(status.code, 0, status.stdout + status.stderr)
    const human = await runCli(['status', '--pool', poolFile], { env: { MEMDRAIN_AUTH_FILE: path.join(dir, 'auth') } })
    assertNoSecret(human.stdout, human.stderr)
    assert.equal(human.code, 0, human.stderr)
    const badFile = await runCli(['status', '--pool', poolFile, '--auth-file', path.join(dir, 'missing'), '--json'])
    assert.equal(badFile.code, 2)
    assert.match(badFile.json.error.message, /cannot read the auth file/)
  })

  it('credentials are sent only to a server that asks: a server without -Y never receives (or stores) them', async () => {
    const plain = await startMemcached()
    servers.push(plain)
    const socket = await openSocket(parseAddress(plain.address), 2000, { credentials: { username: USER, password: PASSWORD, source: 'test' } })
    socket.destroy()
    const conn = await MetaConnection.connect(parseAddress(plain.address))
    try {
      assert.equal(await conn.simple('mg memdrain-auth v'), 'EN', 'no auth item stored')
      assert.equal((await conn.stats()).get('cmd_set'), '0')
    } finally {
      await conn.close()
    }
  })

  it('a SASL-only server (-S) is refused with SASL_REQUIRED explaining why it cannot be enumerated', async () => {
    const saslDir = path.join(dir, 'sasl')
    mkdirSync(saslDir, { recursive: true })
    writeFileSync(path.join(saslDir, 'memcached.conf'), `mech_list: plain\nsasldb_path: ${path.join(saslDir, 'sasldb2')}\n`)
    const s = await startMemcached({ extraArgs: ['-S'], env: { SASL_CONF_PATH: saslDir }, readyWhenListening: true })
    servers.push(s)
    const conn = await MetaConnection.connect(parseAddress(s.address))
    try {
      const err = await rejectsWithCode(conn.checkVersion(), 'SASL_REQUIRED', 3)
      assert.match(err.message, /binary protocol/)
      assert.match(err.message, /metadump/)
      assert.match(err.suggestions.join(' '), /-Y/)
    } finally {
      await conn.close()
    }
    const r = await runCli(['status', '--servers', s.address, '--hash', 'memjs', '--strict', '--json'])
    assert.equal(r.code, 3, r.stdout + r.stderr)
    assert.match(r.stdout, /SASL/)
  })

  it('TLS (-Z): drains over TLS with MEMDRAIN_TLS and a CA; a wrong CA is refused with TLS_FAILED', async () => {
    const key = path.join(dir, 'key.pem')
    const cert = path.join(dir, 'cert.pem')
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' })
    const otherKey = path.join(dir, 'other-key.pem')
    const otherCert = path.join(dir, 'other.pem')
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', otherKey, '-out', otherCert, '-days', '1', '-subj', '/CN=other'], { stdio: 'ignore' })
    const tlsArgs = ['-Z', '-o', `ssl_chain_cert=${cert},ssl_key=${key}`]
    const [a, b] = await Promise.all([startMemcached({ extraArgs: tlsArgs, readyWhenListening: true }), startMemcached({ extraArgs: tlsArgs, readyWhenListening: true })])
    servers.push(a, b)
    const env = { MEMDRAIN_TLS: '1', MEMDRAIN_TLS_CA: cert }
    const settings = transportSettings({ ...env })
    // Plain text to a TLS port is not memcached talking; TLS with the right CA is.
    const plainConn = await MetaConnection.connect(parseAddress(a.address))
    await rejectsWithCode(plainConn.checkVersion(), 'NOT_MEMCACHED', 3)
    await plainConn.close()
    const tlsSocket = await openSocket(parseAddress(a.address), 3000, settings)
    assert.equal((tlsSocket as import('node:tls').TLSSocket).encrypted, true)
    tlsSocket.destroy()
    const poolFile = path.join(dir, 'tls-pool.json')
    writeFileSync(poolFile, JSON.stringify({ hash: 'memjs', clients: 'pool-aware', servers: [a, b].map((s) => ({ address: s.address })) }))
    const load = await runCli(['status', '--pool', poolFile, '--json', '--strict'], { env })
    assert.equal(load.code, 0, load.stdout + load.stderr)
    const drain = await runCli(['drain', a.address, '--pool', poolFile, '--yes', '--json', '--client-grace', '0', '--spool-dir', path.join(dir, 'spool')], { env })
    assert.equal(drain.code, 0, drain.stdout + drain.stderr)
    assert.equal(drain.json.result.state, 'removed')
    const wrongCa = await runCli(['status', '--pool', poolFile, '--json', '--strict'], { env: { MEMDRAIN_TLS: '1', MEMDRAIN_TLS_CA: otherCert } })
    assert.equal(wrongCa.code, 3, wrongCa.stdout)
    assert.match(wrongCa.stdout, /TLS/)
  })

  it('pool file 0600, spool directory 0700 and spool files 0600, whatever the umask', async () => {
    const old = process.umask(0o022)
    try {
      const root = path.join(dir, 'perm-spool')
      const spool = KeySpool.create({ root, order: 'hot-first', serverNow: Math.floor(Date.now() / 1000), label: '127.0.0.1:1' })
      try {
        assert.equal(statSync(root).mode & 0o777, 0o700)
        assert.equal(statSync(spool.dir).mode & 0o777, 0o700)
        const files = readdirSync(spool.dir)
        assert.ok(files.length > 0)
        for (const f of files) assert.equal(statSync(path.join(spool.dir, f)).mode & 0o777, 0o600, f)
      } finally {
        spool.remove()
      }
      const s = await startMemcached()
      const s2 = await startMemcached()
      servers.push(s, s2)
      const poolFile = path.join(dir, 'perm-pool.json')
      writeFileSync(poolFile, JSON.stringify({ hash: 'memjs', servers: [{ address: s.address }, { address: s2.address }] }), { mode: 0o644 })
      const r = await runCli(['mark', s.address, 'deactivating', '--pool', poolFile, '--json'])
      assert.equal(r.code, 0, r.stdout + r.stderr)
      assert.equal(statSync(poolFile).mode & 0o777, 0o600, 'rewritten user-only')
    } finally {
      process.umask(old)
    }
  })
})
