#!/usr/bin/env bash
# Memory per idle connection of the real hub: IDLE_CONNS (default 2,000) connections that never
# say hello, then as many authenticated ones, each on a fresh hub; prints KiB per connection and
# one JSON line (hub/benches/idle.rs). HUB_BIN measures another tidepool-hub binary instead.
set -euo pipefail
cd "$(dirname "$0")/../.."
CARGO=${CARGO:-cargo}
conns=${IDLE_CONNS:-2000}
# The hub and this client each hold one descriptor per connection.
want=$((conns + 1024))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$want" ]; then
    hard=$(ulimit -Hn)
    if [ "$hard" != unlimited ] && [ "$hard" -lt "$want" ]; then
        echo "ulimit -n: need $want descriptors, the hard limit is $hard" >&2
        exit 1
    fi
    ulimit -n "$want"
fi
IDLE_CONNS=$conns $CARGO bench --quiet -p tidepool-hub --bench idle
