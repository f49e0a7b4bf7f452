#!/usr/bin/env bash
# `make run`: the hub with embedded SQLite storage, serving the demo app, and the analytics bridge
# on local Tez (`tidepool-bridge watch`: each job runs again on a warm Tez session as soon as the
# tasks change, after TIDEPOOL_BRIDGE_DEBOUNCE_MS of quiet, default 500).
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
debounce="${TIDEPOOL_BRIDGE_DEBOUNCE_MS:-500}"
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
    local name="$1" top="$2" dag="$3"
    cat >"$state/jobs/$name.toml" <<EOF
name = "$name"
hub = "ws://$addr/v1/sync"
token_file = "../bridge.token"
db = "app"
store = "tasks"
base = "$state/analytics"
$top

[dag]
$dag

[tez]
runner_dir = "$runner"
EOF
}
# Sizes depend on a task alone: each run computes only the tasks changed since the last one.
job task-sizes "incremental = true" "kind = \"enrich\"
[dag.fields]
size = \"if(hours >= 8, 'large', if(hours >= 3, 'medium', 'small'))\""
job project-stats "" 'kind = "aggregate"
group_by = ["project"]
aggregates = ["count", "sum:hours", "avg:hours"]
results_store = "project_stats"
computed_at_field = "computed_at"'

token="$(cat "$state/app.token")"
cat <<EOF

Tidepool Tasks is running.
  open       http://$addr/?user=alice#token=$token
  2nd user   http://$addr/?user=bob   (same browser, after the first: the token is remembered)
  hub        ws://$addr/v1/sync  (data in $state/hub, log in $state/hub.log)
  analytics  on every change: Tez "enrich" (task sizes) and "aggregate" (project totals), runs in $state/analytics

EOF

# One bridge watches both jobs; it keeps a Tez session per job up, so a change reaches the totals
# in seconds. It stops with this script.
"$bin/tidepool-bridge" watch --debounce-ms "$debounce" \
    --job "$state/jobs/task-sizes.toml" --job "$state/jobs/project-stats.toml" &
bridge_pid=$!
stop() {
    kill "$bridge_pid" 2>/dev/null || true
    wait "$bridge_pid" 2>/dev/null || true
    kill "$hub_pid" 2>/dev/null || true
    wait "$hub_pid" 2>/dev/null || true
}
wait "$bridge_pid"
