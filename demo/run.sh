#!/usr/bin/env bash
# `make run`: the hub with embedded SQLite storage, serving the demo app, and the analytics bridge
# on local Tez, writing its results back every TIDEPOOL_BRIDGE_EVERY seconds (default 30) when
# anything changed.
#
#   demo/run.sh SITE_DIR BIN_DIR RUNNER_DIR
#
# State (hub data, tokens, job files, analytics runs) lives in .tidepool/run and survives restarts.
# TIDEPOOL_LISTEN picks the address (default 127.0.0.1:8787). Ctrl-C stops everything.
set -euo pipefail

site="$(cd "$1" && pwd)"
bin="$(cd "$2" && pwd)"
runner="$(cd "$3" && pwd)"
root="$(cd "$(dirname "$0")/.." && pwd)"
state="$root/.tidepool/run"
listen="${TIDEPOOL_LISTEN:-127.0.0.1:8787}"
every="${TIDEPOOL_BRIDGE_EVERY:-30}"
mkdir -p "$state/jobs" "$state/analytics"

"$bin/tidepool-hub" serve --listen "$listen" --data "$state/hub" --static-dir "$site" \
    >"$state/hub.out" 2>"$state/hub.log" &
hub_pid=$!
stop() {
    kill "$hub_pid" 2>/dev/null || true
    wait "$hub_pid" 2>/dev/null || true
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

addr=""
for _ in $(seq 1 100); do
    addr="$(sed -n 's/^listening on //p' "$state/hub.out" | head -n1)"
    [ -n "$addr" ] && break
    kill -0 "$hub_pid" 2>/dev/null || break
    sleep 0.1
done
if [ -z "$addr" ]; then
    echo "the hub did not start:" >&2
    cat "$state/hub.log" >&2
    exit 1
fi

# People and the bridge hold the same kind of token, each with only the grants it needs.
"$bin/tidepool-hub" token --secret-file "$state/hub/secret" --sub demo-user --db app \
    --read tasks --read project_stats --write tasks --ttl 30days >"$state/app.token"
"$bin/tidepool-hub" token --secret-file "$state/hub/secret" --sub analytics --db app \
    --read tasks --read project_stats --write tasks --write project_stats --ttl 30days >"$state/bridge.token"

job() {
    local name="$1" dag="$2"
    cat >"$state/jobs/$name.toml" <<EOF
name = "$name"
hub = "ws://$addr/v1/sync"
token_file = "../bridge.token"
db = "app"
store = "tasks"
base = "$state/analytics"

[dag]
$dag

[tez]
runner_dir = "$runner"
EOF
}
job task-sizes "kind = \"enrich\"
[dag.fields]
size = \"if(hours >= 8, 'large', if(hours >= 3, 'medium', 'small'))\""
job project-stats 'kind = "aggregate"
group_by = ["project"]
aggregates = ["count", "sum:hours", "avg:hours"]
results_store = "project_stats"'

token="$(cat "$state/app.token")"
cat <<EOF

Tidepool Tasks is running.
  open       http://$addr/?user=alice#token=$token
  2nd user   http://$addr/?user=bob   (same browser, after the first: the token is remembered)
  hub        ws://$addr/v1/sync  (data in $state/hub, log in $state/hub.log)
  analytics  every ${every}s: Tez "enrich" (task sizes) and "aggregate" (project totals), runs in $state/analytics

EOF

# Change-log rows the hub has written: when that has not moved since the last round, nothing
# changed and the DAGs are not run again. (A round's own write-back moves it once; the round after
# that finds the same results, writes nothing, and the loop goes quiet.)
log_entries() {
    curl -fsS "http://$addr/metrics" 2>/dev/null | sed -n 's/^tidepool_log_entries_total //p'
}
seen=""
while true; do
    sleep "$every"
    now="$(log_entries || true)"
    if [ -n "$now" ] && [ "$now" = "$seen" ]; then
        continue
    fi
    seen="$now"
    for name in task-sizes project-stats; do
        "$bin/tidepool-bridge" run --job "$state/jobs/$name.toml" 2>&1 | tail -n 3 ||
            echo "bridge: $name failed; trying again in ${every}s" >&2
    done
done
