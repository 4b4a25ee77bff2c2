#!/usr/bin/env bash
# Installs what memdrain's demo and tests need on a fresh Debian machine:
# npm dependencies, the Debian `memcached` package when no memcached binary is on the PATH, `tmux`
# (the terminal tests of the progress display) when absent, and
# `etcd-server` (etcd 3.4, for pools kept in etcd and their tests) when no etcd is on the PATH, and the
# real memcached clients the live conformance tests drive (test/e2e/live-clients.e2e.test.ts,
# test/e2e/twemproxy.live.e2e.test.ts): only the Debian packages not installed yet.
# MEMDRAIN_SETUP_NO_CLIENTS=1 skips the clients (their tests then skip, saying why).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

# need BINARY PACKAGE: installs the Debian PACKAGE when BINARY is not on the PATH.
need() {
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "setup: $1 not found; installing the Debian package $2" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$2" >/dev/null
  fi
}

# The package starts a system memcached on 11211 where services are allowed; memdrain never uses it.
need memcached memcached
# The package may start a system etcd on 2379 where services are allowed; memdrain's tests never use it.
need etcd etcd-server
# The progress display is tested on a real terminal: tmux panes of 160x40 and 80x30.
need tmux tmux

# nutcracker (twemproxy), PHP (php-memcached, pecl memcache), Python (pylibmc, pymemcache,
# python-memcached), Ruby Dalli, Go gomemcache (built offline from /usr/share/gocode), Java
# spymemcached (compiled with javac).
CLIENT_PACKAGES="nutcracker php-cli php-memcached php-memcache python3 python3-pylibmc python3-pymemcache python3-memcache ruby ruby-dalli golang-go golang-github-bradfitz-gomemcache-dev default-jdk-headless libspymemcached-java"
if [ "${MEMDRAIN_SETUP_NO_CLIENTS:-}" != 1 ] && command -v dpkg-query >/dev/null 2>&1; then
  missing=""
  for p in $CLIENT_PACKAGES; do
    # A package counts as present only when installed (not merely known, or removed with its config kept).
    if ! dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed; then missing="$missing $p"; fi
  done
  # javac may come from another JDK package than default-jdk-headless.
  if command -v javac >/dev/null 2>&1; then missing="${missing/ default-jdk-headless/}"; fi
  if [ -n "$missing" ]; then
    echo "setup: installing memcached clients for the live tests:$missing" >&2
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null ||
      echo "setup: could not install some clients; their live tests will skip and say why" >&2
  fi
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: installing npm dependencies" >&2
  npm ci --no-audit --no-fund --loglevel=error
fi
