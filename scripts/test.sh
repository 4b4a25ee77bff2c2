#!/usr/bin/env bash
# The whole test suite: lint, typecheck, build + manifest freshness, unit, integration and e2e tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

step() { printf '\n== %s\n' "$*" >&2; }
step "lint";        npx eslint .
step "typecheck";   npx tsc -p tsconfig.json --noEmit
step "build + manifest + command reference"
before=$(mktemp); cp oclif.manifest.json "$before" 2>/dev/null || true
reference=$(mktemp); cp docs/commands.md "$reference" 2>/dev/null || true
npm run --silent build >/dev/null
node scripts/check-manifest.js "$before"; rm -f "$before"
if ! cmp -s "$reference" docs/commands.md; then
  echo 'docs/commands.md was stale (the build has now regenerated it with `oclif readme`): commit docs/commands.md' >&2
  rm -f "$reference"; exit 1
fi
rm -f "$reference"
step "tests"
# Node 20's test runner does not expand globs itself: list the files here.
shopt -s globstar nullglob
files=(test/unit/**/*.test.ts test/integration/**/*.test.ts test/e2e/**/*.test.ts)
node --import tsx --test --test-concurrency=2 --test-reporter=spec "${files[@]}"
