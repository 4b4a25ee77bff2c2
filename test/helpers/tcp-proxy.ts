/**
 * A fault-injecting TCP proxy on loopback, in front of a real server:
 *
 *   const p = await startProxy('127.0.0.1:11211')   // p.address is what the code under test dials
 *   p.delayMs = 200          // every chunk, both ways, waits 200 ms (a slow link)
 *   p.truncateAfter(4096)    // each connection forwards 4096 more reply bytes, then is cut
 *   p.dropAll()              // destroys every open connection now (a reset link)
 *   p.blackhole = true       // new and open connections forward nothing (a dead route)
 *   await p.close()
 *
 * Chunks keep their order per direction even with a delay (each waits behind the previous).
 */
import { createServer, connect, type Socket } from 'node:net'
import { once } from 'node:events'

export interface TcpProxy {
  readonly address: string
  readonly port: number
  /** Delay applied to every chunk in both directions (ms). */
  delayMs: number
  /** Forward nothing (open connections stall; new ones connect but get no answer). */
  blackhole: boolean
  /** Connections accepted so far. */
  readonly accepted: number
  /** Bytes forwarded server → client. */
  readonly bytesDown: number
  /** After `bytes` more reply bytes on each open and new connection, cut it (mid-reply). */
  truncateAfter(bytes: number): void
  /** Destroy every open connection (both sides) now. */
  dropAll(): void
  close(): Promise<void>
}

export async function startProxy(target: string): Promise<TcpProxy> {
  const colon = target.lastIndexOf(':')
  const host = target.slice(0, colon)
  const port = Number(target.slice(colon + 1))
  const pairs = new Set<{ client: Socket; upstream: Socket; budget: number }>()
  let accepted = 0
  let bytesDown = 0
  let truncate = -1

  const state = { delayMs: 0, blackhole: false }

  const pipe = (from: Socket, to: Socket, pair: { budget: number }, down: boolean): void => {
    let chain = Promise.resolve()
    from.on('data', (chunk: Buffer) => {
      if (state.blackhole) return
      const delay = state.delayMs
      chain = chain.then(async () => {
        if (delay > 0) await new Promise((r) => setTimeout(r, delay))
        if (to.destroyed) return
        if (down && pair.budget >= 0) {
          if (chunk.length >= pair.budget) {
            to.write(chunk.subarray(0, pair.budget))
            bytesDown += pair.budget
            pair.budget = 0
            to.destroy()
            from.destroy()
            return
          }
          pair.budget -= chunk.length
        }
        if (down) bytesDown += chunk.length
        to.write(chunk)
      })
    })
  }

  const server = createServer((client) => {
    accepted++
    const upstream = connect({ host, port })
    const pair = { client, upstream, budget: truncate }
    pairs.add(pair)
    const end = (): void => {
      client.destroy()
      upstream.destroy()
      pairs.delete(pair)
    }
    client.on('error', end)
    upstream.on('error', end)
    client.on('close', end)
    upstream.on('close', end)
    pipe(client, upstream, pair, false)
    pipe(upstream, client, pair, true)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const addr = server.address()
  const listenPort = typeof addr === 'object' && addr !== null ? addr.port : 0

  return {
    address: `127.0.0.1:${listenPort}`,
    port: listenPort,
    get delayMs() {
      return state.delayMs
    },
    set delayMs(v: number) {
      state.delayMs = v
    },
    get blackhole() {
      return state.blackhole
    },
    set blackhole(v: boolean) {
      state.blackhole = v
    },
    get accepted() {
      return accepted
    },
    get bytesDown() {
      return bytesDown
    },
    truncateAfter(bytes: number) {
      truncate = bytes
      for (const p of pairs) p.budget = bytes
    },
    dropAll() {
      for (const p of pairs) {
        p.client.destroy()
        p.upstream.destroy()
      }
      pairs.clear()
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const p of pairs) {
          p.client.destroy()
          p.upstream.destroy()
        }
        pairs.clear()
        server.close(() => resolve())
      }),
  }
}
