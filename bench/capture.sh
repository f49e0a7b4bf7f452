#!/usr/bin/env bash
# Runs one benchmark make target and keeps what it reports for bench/report.py:
# target/bench/TARGET.jsonl gets one JSON object per result line the target printed (a line that is
# a JSON object, a `BENCH {json}` line, or a `summary ...` line, kept as text), each with the
# section (the target's name), the command and the load average before the run; the full output
# goes to target/bench/TARGET.log. A new benchmark becomes a section of BENCHMARKS.md by printing
# such lines and being listed in BENCH_TARGETS.
set -euo pipefail
target=$1
shift
cd "$(dirname "$0")/.."
out=${BENCH_OUT:-${CARGO_TARGET_DIR:-$PWD/target}/bench}
mkdir -p "$out"
load=$(cut -d' ' -f1 /proc/loadavg)
started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
status=0
"${MAKE:-make}" --no-print-directory "$target" "$@" 2>&1 | tee "$out/$target.log" || status=$?
python3 - "$target" "$load" "$started" "$status" "$out/$target.log" "$out/$target.jsonl" <<'EOF'
import json, sys
target, load, started, status, log, out = sys.argv[1:]
rows = []
for line in open(log, errors="replace"):
    line = line.strip()
    if line.startswith("BENCH "):
        line = line[len("BENCH "):]
    row = None
    if line.startswith("{") and line.endswith("}"):
        try:
            row = json.loads(line)
        except ValueError:
            row = None
    elif line.startswith("summary "):
        row = {"text": line[len("summary "):]}
    if isinstance(row, dict):
        # A row that names its own section (bench/run_load.py) keeps it.
        row.setdefault("section", target)
        row.update(target=target, command=f"make {target}", load_before=row.get("load_before", float(load)), started=started)
        rows.append(row)
if int(status) != 0:
    rows.append({"section": target, "target": target, "command": f"make {target}", "started": started,
                 "failed": f"make {target} exited with status {status}; see {log}"})
with open(out, "w") as f:
    for row in rows:
        f.write(json.dumps(row) + "\n")
print(f"{target}: {len(rows)} result lines -> {out}", file=sys.stderr)
EOF
