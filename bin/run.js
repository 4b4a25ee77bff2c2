#!/usr/bin/env node
import { setFlagsFromString } from 'node:v8'

// V8's young generation starts at 1 MB a semi-space and doubles, up to 16 MB, as a process keeps
// allocating: a long job's peak RSS then grew with its duration (some 30 MB), not with what it
// holds. memdrain's per-key path reuses its buffers, so a young generation kept at its first
// size costs a few more scavenges (26, 23 ms of CPU, in a 1M-key drain) and keeps the peak RSS
// flat: 1M-key drain 97 → 86 MB. Set before anything else loads; the library leaves an
// application's heap alone (this is the command's own process).
setFlagsFromString('--semi-space-growth-factor=1')
// oclif checks the Node version against its own engines (>= 18) when it loads, requiring semver
// for it: some 13 ms of every command's start. memdrain's engines (>= 20) are stricter; the
// variable is set only while oclif loads, so that commands memdrain runs do not inherit it.
const engineCheck = process.env.OCLIF_DISABLE_ENGINE_WARNING
process.env.OCLIF_DISABLE_ENGINE_WARNING = '1'
const { execute } = await import('@oclif/core')
if (engineCheck === undefined) delete process.env.OCLIF_DISABLE_ENGINE_WARNING
else process.env.OCLIF_DISABLE_ENGINE_WARNING = engineCheck
await execute({ dir: import.meta.url })
