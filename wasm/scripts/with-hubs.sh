#!/usr/bin/env bash
# Runs a command with two real hubs: one in --insecure-dev mode and one checking tokens, each on a
# free port with a temporary data directory. Exports TIDEPOOL_HUB_URL, TIDEPOOL_AUTH_HUB_URL and
# TIDEPOOL_AUTH_TOKEN for the command, and stops the hubs afterwards whatever happens.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
cargo="${CARGO:-cargo}"
"$cargo" build --quiet -p tidepool-hub --bin tidepool-hub --manifest-path "$root/Cargo.toml"
hub="${CARGO_TARGET_DIR:-$root/target}/debug/tidepool-hub"

work="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
# A signal exits through the EXIT trap too, so an interrupted run leaves no hub behind.
trap 'exit 130' INT
trap 'exit 143' TERM

# Starts a hub and sets `addr` to the address it announces on stdout. Not called as `$(start)`:
# a subshell would keep the hub's pid from `pids`, and the hub would outlive this script.
start() {
    local name="$1"; shift
    mkdir -p "$work/$name"
    "$hub" serve --listen 127.0.0.1:0 --data "$work/$name/data" "$@" >"$work/$name/out" 2>"$work/$name/err" &
    pids+=($!)
    addr=""
    for _ in $(seq 1 300); do
        addr="$(sed -n 's/^listening on //p' "$work/$name/out" | head -n1)"
        if [ -n "$addr" ]; then return; fi
        if ! kill -0 "${pids[-1]}" 2>/dev/null; then break; fi
        sleep 0.1
    done
    echo "hub '$name' did not start:" >&2
    cat "$work/$name/err" >&2
    exit 1
}

start open --insecure-dev
open_addr="$addr"
start auth
auth_addr="$addr"
token="$("$hub" token --secret-file "$work/auth/data/secret" --sub wasm-tests --db '*' --read '*' --write '*' --ttl 1h)"

export TIDEPOOL_HUB_URL="ws://$open_addr/v1/sync"
export TIDEPOOL_AUTH_HUB_URL="ws://$auth_addr/v1/sync"
export TIDEPOOL_AUTH_TOKEN="$token"
echo "hubs: $TIDEPOOL_HUB_URL (open), $TIDEPOOL_AUTH_HUB_URL (tokens)" >&2
# In the background and waited for, so a signal is handled now rather than when the command ends.
set +e
"$@" &
pids+=($!)
wait "${pids[-1]}"
status=$?
set -e
if [ "$status" -ne 0 ]; then
    echo "--- open hub log (tail) ---" >&2; tail -n 40 "$work/open/err" >&2 || true
    echo "--- token hub log (tail) ---" >&2; tail -n 20 "$work/auth/err" >&2 || true
fi
exit "$status"
