#!/usr/bin/env bash
# Installs what memdrain's demo and tests need on a fresh Debian machine:
# npm dependencies, the Debian `memcached` package when no memcached binary is on the PATH, `tmux`
# (the terminal tests of the progress display) when absent, and
# `etcd-server` (etcd 3.4, for pools kept in etcd and their tests) when no etcd is on the PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v memcached >/dev/null 2>&1; then
  echo "setup: memcached not found; installing the Debian package" >&2
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq memcached >/dev/null
  # The package starts a system memcached on 11211 where services are allowed; memdrain never uses it.
fi

if ! command -v etcd >/dev/null 2>&1; then
  echo "setup: etcd not found; installing the Debian package etcd-server" >&2
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  # The package may start a system etcd on 2379 where services are allowed; memdrain's tests never use it.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq etcd-server >/dev/null
fi

if ! command -v tmux >/dev/null 2>&1; then
  # The progress display is tested on a real terminal: tmux panes of 160x40 and 80x30.
  echo "setup: tmux not found; installing the Debian package" >&2
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq tmux >/dev/null
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: installing npm dependencies" >&2
  npm ci --no-audit --no-fund --loglevel=error
fi
