#!/usr/bin/env bash
# Cold vs warm DAG in Tez local mode: the one-shot DagRunner (a JVM and an AM per DAG) against
# SessionRunner (one JVM and AM, DAG requests on stdin), aggregate with a where over 10,000 records.
# Prints the median seconds of each and their ratio (same machine, same run). Usage: ./bench-session.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")"
RUNS="${1:-5}"
[ -f target/tidepool-tez.jar ] || mvn -B -q package -DskipTests
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
OPENS="--add-opens=java.base/java.lang=ALL-UNNAMED --add-opens=java.base/java.util=ALL-UNNAMED --add-opens=java.base/java.io=ALL-UNNAMED --add-opens=java.base/java.nio=ALL-UNNAMED --add-opens=java.base/sun.nio.ch=ALL-UNNAMED"
JAVA=(java $OPENS "-Djava.io.tmpdir=$TMP" "-Dorg.xerial.snappy.tempdir=$TMP" -cp "target/tidepool-tez.jar:target/lib/*")
mkdir -p "$TMP/in"
awk 'BEGIN { for (i = 0; i < 10000; i++) printf "{\"key\":%d,\"doc\":\"%064x\",\"heads\":[],\"value\":{\"project\":\"p%d\",\"hours\":%d,\"done\":%s}}\n", i, i, i % 10, i % 17, (i % 3 == 0 ? "true" : "false") }' > "$TMP/in/part-00000.jsonl"
args() { printf -- '--dag\taggregate\t--input\t%s\t--output\t%s\t--group-by\tproject\t--agg\tcount\t--agg\tsum:hours\t--where\t!done' "$TMP/in" "$1"; }
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

cold=()
for i in $(seq "$RUNS"); do
  start=$(date +%s.%N)
  IFS=$'\t' read -r -a a <<< "$(args "$TMP/cold$i")"
  "${JAVA[@]}" dev.tidepool.tez.DagRunner "${a[@]}" < /dev/null > /dev/null 2>&1
  cold+=("$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')")
done
# One warm-up request, then RUNS measured ones (the status line carries each DAG's seconds).
warm=$( { for i in $(seq 0 "$RUNS"); do args "$TMP/warm$i"; echo; done; } \
  | "${JAVA[@]}" dev.tidepool.tez.SessionRunner 2> /dev/null | awk '/^DAG_STATUS SUCCEEDED/ { n++; if (n > 1) print $3 }')
[ "$(echo "$warm" | wc -l)" -eq "$RUNS" ] || { echo "the session did not answer every request" >&2; exit 1; }
diff <(cat "$TMP"/cold1/part-*) <(cat "$TMP"/warm1/part-*) > /dev/null || { echo "warm and cold results differ" >&2; exit 1; }
c=$(printf '%s\n' "${cold[@]}" | median)
w=$(echo "$warm" | median)
printf 'Tez local mode, aggregate+where over 10,000 records, median of %s:\n' "$RUNS"
printf '  cold (DagRunner, JVM + AM per DAG): %.2f s\n  warm (SessionRunner DAG):           %.2f s\n  warm/cold: %.2f\n' "$c" "$w" "$(awk -v w="$w" -v c="$c" 'BEGIN { print w / c }')"
ratio=$(awk -v w="$w" -v c="$c" 'BEGIN { printf "%.2f", c / w }')
printf 'summary Tez local mode, aggregate with a where over 10,000 records, median of %s: a DAG in a warm session took %.2f s against %.2f s for a cold one-shot DAG (JVM and AM per DAG): %sx faster\n' "$RUNS" "$w" "$c" "$ratio"
printf 'BENCH {"figure":"dag","records":10000,"runs":%s,"cold_seconds":%s,"warm_seconds":%s,"cold_over_warm":%s}\n' "$RUNS" "$c" "$w" "$ratio"
