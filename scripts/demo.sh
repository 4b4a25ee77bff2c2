#!/usr/bin/env bash
# The main job on a local demo pool: start 4 memcached servers, load keys, plan and drain one
# server, verify every key is at its new owner, stop the servers. Installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
[ -f dist/commands/drain.js ] || npm run --silent build >/dev/null

mkdir -p tmp/demo
POOL="$PWD/tmp/demo/memdrain.json"
KEYS="${KEYS:-20000}"
md() { node bin/run.js "$@" --pool "$POOL"; }
cleanup() { md demo --stop >/dev/null 2>&1 || true; }
trap cleanup EXIT

md demo --keys "$KEYS" --force
SERVER=$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).servers[0].address)' "$POOL")
echo; echo "== memdrain plan $SERVER"
md plan "$SERVER"
echo; echo "== memdrain drain $SERVER (copy hand-off; the switch command stands in for your config deploy)"
md drain "$SERVER" --yes --rate 0 --handoff copy --switch-command 'echo "  (switch: applications now use the pool without $MEMDRAIN_SOURCE)" >&2'
echo; echo "== memdrain status"
md status
echo; echo "== every key at the owner the client would ask?"
md demo --verify --keys "$KEYS"
