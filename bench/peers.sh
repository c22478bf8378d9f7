#!/usr/bin/env bash
# bench/peers.sh - a working copy of ../shared/peers (the load generator and the
# peers users would pick instead) in var/peers, with tether's adapters added.
# The shared copy stays untouched: node_modules and results live in var/peers.
#   bench/peers.sh prepare            copy, register adapters, npm ci (once)
#   bench/peers.sh loadgen ARGS...    node loadgen.mjs ARGS (in var/peers)
#   bench/peers.sh run PEER CFG REPS  the peers' own run.sh (resumable, durable, ...)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SRC=${TETHER_PEERS_SRC:-$ROOT/../shared/peers}
DST=$ROOT/var/peers

prepare() {
  [ -f "$SRC/loadgen.mjs" ] || { echo "peers: no load generator at $SRC" >&2; exit 1; }
  mkdir -p "$DST"
  (cd "$SRC" && tar cf - --exclude=node_modules --exclude=results .) | (cd "$DST" && tar xf -)
  chmod -R u+w "$DST"
  cp "$ROOT/bench/peers/tether.mjs" "$ROOT/bench/peers/tether-baseline.mjs" "$DST/adapters/"
  if ! grep -q "tether-baseline" "$DST/loadgen.mjs"; then
    sed -i "s|^  ours: './adapters/ours.mjs',.*|&\n  tether: './adapters/tether.mjs',\n  'tether-baseline': './adapters/tether-baseline.mjs',|" "$DST/loadgen.mjs"
  fi
  grep -q "'tether-baseline'" "$DST/loadgen.mjs" || { echo "peers: could not register the adapters" >&2; exit 1; }
  if [ ! -d "$DST/node_modules/resumable-stream" ]; then
    (cd "$DST" && npm ci --no-audit --no-fund >/dev/null 2>&1) || { echo "peers: npm ci failed" >&2; exit 1; }
  fi
  command -v redis-server >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server jq >/dev/null; }
  command -v jq >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq jq >/dev/null; }
}

case "${1:-}" in
  prepare) prepare ;;
  loadgen) shift; prepare; cd "$DST" && exec node loadgen.mjs "$@" ;;
  run) shift; prepare; cd "$DST" && PEERS_COPY=1 exec ./run.sh "$@" ;;
  *) echo "usage: bench/peers.sh prepare | loadgen ARGS... | run PEER CFG REPS" >&2; exit 2 ;;
esac
