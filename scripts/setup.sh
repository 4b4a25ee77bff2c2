#!/usr/bin/env bash
# Installs what memdrain's demo and tests need on a fresh Debian machine: npm dependencies and the
# Debian packages not installed yet:
# - memcached (the demo and every integration test) and etcd-server (etcd 3.4: pools kept in etcd);
# - tmux (the terminal tests: prompts, Ctrl-C, 80 columns, NO_COLOR, progress bars);
# - the real memcached clients the live conformance tests drive (test/e2e/live-clients.e2e.test.ts,
#   test/e2e/twemproxy.live.e2e.test.ts): nutcracker (twemproxy), PHP (php-memcached, pecl memcache),
#   Python (pylibmc, pymemcache, python-memcached), Ruby Dalli, Go gomemcache (built offline from
#   /usr/share/gocode), Java spymemcached (compiled with javac).
#   MEMDRAIN_SETUP_NO_CLIENTS=1 skips the clients (their tests then skip, saying why).
# The memcached and etcd packages may start system services on 11211/2379 where services are
# allowed; memdrain's demo and tests never use them.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
updated=""
apt_install() { # packages… (installs those given; one apt-get update per run)
  if [ -z "$updated" ]; then $SUDO apt-get update -qq; updated=1; fi
  # shellcheck disable=SC2068
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $@ >/dev/null
}
installed() { # A package counts as present only when installed (not merely known, or removed with its config kept).
  command -v dpkg-query >/dev/null 2>&1 && dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null | grep -qx installed
}

needed=""
command -v memcached >/dev/null 2>&1 || needed="$needed memcached"
command -v etcd >/dev/null 2>&1 || needed="$needed etcd-server"
command -v tmux >/dev/null 2>&1 || needed="$needed tmux"
if [ -n "$needed" ]; then
  echo "setup: installing$needed (Debian)" >&2
  apt_install $needed
fi

CLIENT_PACKAGES="nutcracker php-cli php-memcached php-memcache python3 python3-pylibmc python3-pymemcache python3-memcache ruby ruby-dalli golang-go golang-github-bradfitz-gomemcache-dev default-jdk-headless libspymemcached-java"
if [ "${MEMDRAIN_SETUP_NO_CLIENTS:-}" != 1 ] && command -v dpkg-query >/dev/null 2>&1; then
  missing=""
  for p in $CLIENT_PACKAGES; do installed "$p" || missing="$missing $p"; done
  # javac may come from another JDK package than default-jdk-headless.
  if command -v javac >/dev/null 2>&1; then missing="${missing/ default-jdk-headless/}"; fi
  if [ -n "$missing" ]; then
    echo "setup: installing memcached clients for the live tests:$missing" >&2
    apt_install $missing || echo "setup: could not install some clients; their live tests will skip and say why" >&2
  fi
fi

# Real application clients of modulo placements for the drain tests (test/integration/drain.modulo.test.ts).
if ! php -r 'exit(class_exists("Memcached") ? 0 : 1);' >/dev/null 2>&1 || ! /usr/bin/python3 -c 'import pylibmc' >/dev/null 2>&1; then
  echo "setup: php-memcached or python3-pylibmc not found; installing the Debian packages" >&2
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq php-cli php-memcached python3-pylibmc >/dev/null
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: installing npm dependencies" >&2
  npm ci --no-audit --no-fund --loglevel=error
fi
