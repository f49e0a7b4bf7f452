#!/usr/bin/env bash
# Starts a release hub on a fresh data directory, runs tidepool-load against it (real sockets,
# real tokens, real SQLite) and prints the load tool's JSON line.
# Knobs: CLIENTS, RECORDS, OPS, WINDOW (environment variables).
set -euo pipefail
cd "$(dirname "$0")/../.."
CARGO=${CARGO:-cargo}
CLIENTS=${CLIENTS:-50}
RECORDS=${RECORDS:-1000}
OPS=${OPS:-10000}
WINDOW=${WINDOW:-8}

$CARGO build --quiet --release -p tidepool-hub -p tidepool-client --bins
bin="${CARGO_TARGET_DIR:-$PWD/target}/release"
work=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

"$bin/tidepool-hub" serve --listen 127.0.0.1:0 --data "$work/data" >"$work/out" 2>"$work/log" &
pid=$!
for _ in $(seq 1 100); do
    grep -q '^listening on ' "$work/out" 2>/dev/null && break
    sleep 0.1
done
addr=$(sed -n 's/^listening on //p' "$work/out")
[ -n "$addr" ] || { cat "$work/log" >&2; echo "hub did not start" >&2; exit 1; }
token=$("$bin/tidepool-hub" token --secret-file "$work/data/secret" --sub bench --db load --read '*' --write '*')
echo "tidepool-load --clients $CLIENTS --records $RECORDS --ops $OPS --window $WINDOW against $addr" >&2
"$bin/tidepool-load" --url "ws://$addr/v1/sync" --token "$token" \
    --clients "$CLIENTS" --records "$RECORDS" --ops "$OPS" --window "$WINDOW"
