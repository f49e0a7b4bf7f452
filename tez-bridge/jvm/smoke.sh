#!/usr/bin/env bash
# End-to-end smoke test of the JVM side of the Tez bridge:
#   build (if needed) -> start HdfsTestCluster -> upload JSON Lines with FsShell ->
#   run the aggregate, enrich and fail DAGs (and two expected failures) in Tez local mode
#   against hdfs:// -> check the outputs -> stop the cluster by closing its stdin.
# Exits non-zero on any failure. Needs: java 17+, mvn (only to build).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE"

export USER="${USER:-$(id -un)}"
JAVA="${JAVA:-java}"
READY_TIMEOUT="${READY_TIMEOUT:-180}"

# JVM flags for Hadoop/Tez on Java 17 (see README.md); override with TIDEPOOL_JAVA_FLAGS.
read -r -a JAVA_FLAGS <<< "${TIDEPOOL_JAVA_FLAGS:---add-opens=java.base/java.lang=ALL-UNNAMED --add-opens=java.base/java.util=ALL-UNNAMED --add-opens=java.base/java.io=ALL-UNNAMED --add-opens=java.base/java.nio=ALL-UNNAMED --add-opens=java.base/sun.nio.ch=ALL-UNNAMED}"

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'SMOKE FAILED: %s\n' "$*" >&2; exit 1; }

# ---- build ---------------------------------------------------------------------------------
JAR="target/tidepool-tez.jar"
if [[ ! -f "$JAR" || ! -d target/lib || pom.xml -nt "$JAR" \
      || -n "$(find src/main -newer "$JAR" -type f -print -quit)" ]]; then
  log "building"
  mvn -B -q package -DskipTests
fi
[[ -f "$JAR" ]] || die "build did not produce $JAR"
CP="$HERE/$JAR:$HERE/target/lib/*"
# FsShell refuses to run without a core-site.xml on the classpath; conf/ has an empty one.
SHELL_CP="$HERE/conf:$CP"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/tidepool-smoke.XXXXXX")"

# ---- host name -----------------------------------------------------------------------------
# Tez local mode calls InetAddress.getLocalHost(); it fails if the host name does not resolve.
# Then give the JVM its own hosts file (jdk.net.hosts.file) that maps it to 127.0.0.1.
HOST="$(hostname)"
if ! getent hosts "$HOST" > /dev/null 2>&1; then
  log "host name '$HOST' does not resolve; using a private hosts file for the JVMs"
  printf '127.0.0.1 localhost %s\n' "$HOST" > "$WORK/hosts"
  JAVA_FLAGS+=("-Djdk.net.hosts.file=$WORK/hosts")
fi

CLUSTER_PID=""
cleanup() {
  local rc=$?
  exec 3>&- 2> /dev/null || true
  if [[ -n "$CLUSTER_PID" ]] && kill -0 "$CLUSTER_PID" 2> /dev/null; then
    for _ in $(seq 1 30); do
      kill -0 "$CLUSTER_PID" 2> /dev/null || break
      sleep 1
    done
    if kill -0 "$CLUSTER_PID" 2> /dev/null; then
      kill "$CLUSTER_PID" 2> /dev/null || true
    fi
  fi
  if [[ $rc -ne 0 && -f "$WORK/cluster.err" ]]; then
    echo "--- last lines of the cluster's stderr:" >&2
    tail -n 20 "$WORK/cluster.err" >&2 || true
  fi
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT

# ---- start the cluster ---------------------------------------------------------------------
log "starting HdfsTestCluster"
mkfifo "$WORK/cluster.stdin"
start=$(date +%s.%N)
"$JAVA" "${JAVA_FLAGS[@]}" -cp "$CP" dev.tidepool.tez.HdfsTestCluster "$WORK/hdfs" \
  < "$WORK/cluster.stdin" > "$WORK/cluster.out" 2> "$WORK/cluster.err" &
CLUSTER_PID=$!
exec 3> "$WORK/cluster.stdin"   # keeps the cluster's stdin open until we close fd 3

FS=""
deadline=$(( $(date +%s) + READY_TIMEOUT ))
while [[ -z "$FS" ]]; do
  if ! kill -0 "$CLUSTER_PID" 2> /dev/null; then
    die "HdfsTestCluster exited before it was ready"
  fi
  (( $(date +%s) < deadline )) || die "HdfsTestCluster not ready after ${READY_TIMEOUT}s"
  FS="$(sed -n 's/^READY \(hdfs:\/\/127\.0\.0\.1:[0-9][0-9]*\)$/\1/p' "$WORK/cluster.out")"
  [[ -n "$FS" ]] || sleep 0.2
done
log "cluster ready at $FS after $(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"

fsshell() { "$JAVA" "${JAVA_FLAGS[@]}" -cp "$SHELL_CP" org.apache.hadoop.fs.FsShell -fs "$FS" "$@"; }

# runner EXPECTED_EXIT ARGS... : runs DagRunner, shows its status line, checks its exit code.
runner() {
  local want=$1
  shift
  local rc=0
  "$JAVA" "${JAVA_FLAGS[@]}" -cp "$CP" dev.tidepool.tez.DagRunner --fs-default "$FS" "$@" \
    > "$WORK/runner.out" 2> "$WORK/runner.err" || rc=$?
  cat "$WORK/runner.out"
  if [[ $rc -ne $want ]]; then
    tail -n 40 "$WORK/runner.err" >&2
    die "DagRunner $* exited $rc, expected $want"
  fi
  [[ "$(wc -l < "$WORK/runner.out")" -eq 1 ]] || die "stdout of DagRunner is not one line"
  grep -Eq '^DAG_STATUS [A-Z_]+ [0-9]+\.[0-9]{3}$' "$WORK/runner.out" \
    || die "no DAG_STATUS line"
}

# expect_line FILE LINE : LINE must be a whole line of FILE.
expect_line() {
  grep -Fxq -- "$2" "$1" || die "expected line not found in $(basename "$1"): $2"
}

# ---- inputs --------------------------------------------------------------------------------
cat > "$WORK/small.jsonl" << 'EOF'
{"key": 1, "doc": "0a01", "heads": ["aa"], "value": {"region": "eu", "amount": 10, "name": "Ada"}}
{"key": 2, "doc": "0a02", "heads": ["bb"], "value": {"region": "eu", "amount": 2.5, "name": "Bob"}}
{"key": "k3", "doc": "0a03", "heads": [], "value": {"region": "us", "amount": -4, "name": "Cy"}}
{"key": [4, "x"], "doc": "0a04", "heads": ["cc", "dd"], "value": {"region": "us", "name": "Dee"}}
{"key": 5, "doc": "0a05", "heads": ["ee"], "value": {"amount": "n/a"}}
{"key": 6, "doc": "0a06", "heads": ["ff"], "value": "not an object"}
EOF
awk 'BEGIN {
  split("eu us apac", r, " ");
  for (i = 0; i < 1000; i++) {
    printf "{\"key\": %d, \"doc\": \"%08x\", \"heads\": [\"%064x\"], ", i, i, i;
    printf "\"value\": {\"region\": \"%s\", \"amount\": %d.%02d, \"n\": %d}}\n", r[i % 3 + 1], i % 50, i % 100, i;
  }
}' > "$WORK/big.jsonl"
printf '{"key": 1, "doc": "01", "heads": [], "value": {"a": 1}}\nthis is not JSON\n' \
  > "$WORK/bad.jsonl"

log "uploading inputs with FsShell"
mkdir -p "$WORK/in/small" "$WORK/in/big" "$WORK/in/bad"
mv "$WORK/small.jsonl" "$WORK/in/small/part-00000.jsonl"
mv "$WORK/big.jsonl" "$WORK/in/big/part-00000.jsonl"
mv "$WORK/bad.jsonl" "$WORK/in/bad/part-00000.jsonl"
fsshell -mkdir -p /smoke/in
fsshell -put "$WORK/in/small" "$WORK/in/big" "$WORK/in/bad" /smoke/in/

# ---- run the DAGs --------------------------------------------------------------------------
log "aggregate (6 records)"
runner 0 --dag aggregate --input /smoke/in/small --output /smoke/out/agg --group-by region \
  --agg count --agg sum:amount --agg min:amount --agg max:amount --agg avg:amount

log "aggregate (1000 records)"
runner 0 --dag aggregate --input /smoke/in/big --output /smoke/out/big --group-by region \
  --agg count --agg sum:amount --agg avg:amount --name tidepool-smoke-big

log "enrich"
runner 0 --dag enrich --input /smoke/in/small --output /smoke/out/enrich \
  --field 'total=amount * 2' --field "label=upper(coalesce(name, 'anon')) + '@' + region" \
  --field 'big=if(amount >= 5, true, false)' --field 'nlen=len(name)'

log "fail DAG (must end FAILED and leave no output)"
runner 2 --dag fail --output /smoke/out/fail
grep -q '^DAG_STATUS FAILED ' "$WORK/runner.out" || die "fail: state is not FAILED"
grep -q 'deliberate processor failure' "$WORK/runner.err" || die "fail: no diagnostics on stderr"

log "malformed input (must fail)"
runner 2 --dag aggregate --input /smoke/in/bad --output /smoke/out/bad-agg --group-by a
grep -q 'malformed input record at byte offset 56' "$WORK/runner.err" \
  || die "malformed (aggregate): no diagnostics"
runner 2 --dag enrich --input /smoke/in/bad --output /smoke/out/bad-enrich --field 'x=a'
grep -q 'malformed input record at byte offset 56' "$WORK/runner.err" \
  || die "malformed (enrich): no diagnostics"

log "expression parse error (must fail before submitting)"
runner 2 --dag enrich --input /smoke/in/small --output /smoke/out/never --field 'x=amount +* 2'
grep -q '^DAG_STATUS NOT_SUBMITTED ' "$WORK/runner.out" || die "parse error: DAG was submitted"
grep -q "cannot parse expression 'amount +\* 2'" "$WORK/runner.err" || die "parse error: no message"
cat "$WORK/runner.err"

# ---- check the outputs ---------------------------------------------------------------------
log "fetching /smoke/out with FsShell"
fsshell -get /smoke/out "$WORK/out"
( cd "$WORK/out" && find . -type f | sort ) >&2

OUT="$WORK/out"
for d in agg big enrich; do
  [[ -f "$OUT/$d/_SUCCESS" ]] || die "$d: no _SUCCESS"
  cat "$OUT/$d"/part-* > "$WORK/$d.txt"
  echo "--- $d"
  cat "$WORK/$d.txt"
done
for d in fail bad-agg bad-enrich never; do
  [[ ! -e "$OUT/$d" ]] || die "$d: the failed run left output behind"
done

[[ "$(wc -l < "$WORK/agg.txt")" -eq 3 ]] || die "aggregate: expected 3 groups"
expect_line "$WORK/agg.txt" '{"key":["eu"],"value":{"region":"eu","count":2,"sum_amount":12.5,"min_amount":2.5,"max_amount":10,"avg_amount":6.25}}'
expect_line "$WORK/agg.txt" '{"key":["us"],"value":{"region":"us","count":2,"sum_amount":-4,"min_amount":-4,"max_amount":-4,"avg_amount":-4}}'
expect_line "$WORK/agg.txt" '{"key":[null],"value":{"region":null,"count":1,"sum_amount":null,"min_amount":null,"max_amount":null,"avg_amount":null}}'

[[ "$(wc -l < "$WORK/big.txt")" -eq 3 ]] || die "aggregate (1000): expected 3 groups"
expect_line "$WORK/big.txt" '{"key":["eu"],"value":{"region":"eu","count":334,"sum_amount":8348.33,"avg_amount":24.995}}'
expect_line "$WORK/big.txt" '{"key":["us"],"value":{"region":"us","count":333,"sum_amount":8331.67,"avg_amount":25.02003003003003}}'
expect_line "$WORK/big.txt" '{"key":["apac"],"value":{"region":"apac","count":333,"sum_amount":8315,"avg_amount":24.96996996996997}}'

[[ "$(wc -l < "$WORK/enrich.txt")" -eq 6 ]] || die "enrich: expected 6 records"
expect_line "$WORK/enrich.txt" '{"key":1,"doc":"0a01","fields":{"total":20,"label":"ADA@eu","big":true,"nlen":3}}'
expect_line "$WORK/enrich.txt" '{"key":2,"doc":"0a02","fields":{"total":5,"label":"BOB@eu","big":false,"nlen":3}}'
expect_line "$WORK/enrich.txt" '{"key":"k3","doc":"0a03","fields":{"total":-8,"label":"CY@us","big":false,"nlen":2}}'
expect_line "$WORK/enrich.txt" '{"key":[4,"x"],"doc":"0a04","fields":{"total":null,"label":"DEE@us","big":false,"nlen":3}}'
expect_line "$WORK/enrich.txt" '{"key":5,"doc":"0a05","fields":{"total":null,"label":null,"big":false,"nlen":null}}'
expect_line "$WORK/enrich.txt" '{"key":6,"doc":"0a06","fields":{"total":null,"label":null,"big":false,"nlen":null}}'

# ---- stop ----------------------------------------------------------------------------------
log "stopping the cluster (closing its stdin)"
exec 3>&-
cluster_rc=0
wait "$CLUSTER_PID" || cluster_rc=$?
CLUSTER_PID=""
[[ $cluster_rc -eq 0 ]] || die "HdfsTestCluster exited $cluster_rc"
[[ "$(wc -l < "$WORK/cluster.out")" -eq 1 ]] || die "HdfsTestCluster printed more than READY"

echo "SMOKE OK"
