# Make targets for the benchmark report (bench/); included by the root Makefile.
#
# bench-deps          node and npm (Debian's when missing), `npm install` in bench/node (automerge-repo
#                     2.5.6 from npm, never committed), and a Python venv in bench/.venv with
#                     matplotlib for the plots
# bench-vs-repo       Tidepool's hub against an automerge-repo sync server, same workload, N =
#                     BENCH_CLIENTS, interleaved, BENCH_REPS times (bench/run_load.py)
# bench-initial-sync  a fresh client downloads BENCH_SYNC_SIZES records, both systems
# bench-report        BENCHMARKS.md and bench/plots/ from target/bench/*.jsonl
#
# `make bench` runs every target in BENCH_TARGETS through bench/capture.sh (which keeps their
# result lines in target/bench/) and then bench-report. None of this runs in `make test`.

BENCH_TARGETS += bench-vs-repo bench-initial-sync
BENCH_SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
BENCH_STAMP := bench/node/node_modules/.installed
BENCH_VENV := bench/.venv
BENCH_OUT ?= $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)/bench
export BENCH_OUT

BENCH_CLIENTS ?= 10 50 200
BENCH_RECORDS ?= 1000
BENCH_OPS ?= 10000
BENCH_WINDOW ?= 8
BENCH_REPS ?= 3
BENCH_PROCS ?= 4
# Seconds a run may write (or a fresh client fetch) before it is stopped and counted unfinished.
BENCH_CAP ?= 300
BENCH_SYNC_SIZES ?= 1000 3000 10000

.PHONY: bench-deps bench-vs-repo bench-initial-sync bench-report bench-build

bench-deps: $(BENCH_STAMP) $(BENCH_VENV)/.installed

# `npm install`, not `npm ci`: cbor-x's optional prebuilt extractors (2.2.3) are missing from the
# registry, so the lock file cannot list them and `npm ci` refuses it; the locked versions of
# everything else are installed all the same.
$(BENCH_STAMP): bench/node/package.json bench/node/package-lock.json
	@command -v npm >/dev/null || ($(BENCH_SUDO) apt-get update && $(BENCH_SUDO) apt-get install -y nodejs npm)
	cd bench/node && npm install --no-audit --no-fund
	touch $@

$(BENCH_VENV)/.installed: bench/requirements.txt
	@python3 -m venv --help >/dev/null 2>&1 || ($(BENCH_SUDO) apt-get update && $(BENCH_SUDO) apt-get install -y python3-venv)
	python3 -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet -r bench/requirements.txt
	touch $@

bench-build:
	$(CARGO) build --release -p tidepool-hub -p tidepool-client --bins

# Interleaved: for each repetition, each N, Tidepool then automerge-repo.
bench-vs-repo: bench-deps bench-build
	@for rep in $$(seq 1 $(BENCH_REPS)); do for n in $(BENCH_CLIENTS); do for system in tidepool automerge-repo; do \
		echo "run $$rep/$(BENCH_REPS): $$system, $$n clients" >&2; \
		python3 bench/run_load.py load $$system --section vs-repo --clients $$n --records $(BENCH_RECORDS) \
			--ops $(BENCH_OPS) --window $(BENCH_WINDOW) --procs $(BENCH_PROCS) --cap $(BENCH_CAP) || exit 1; \
	done; done; done

bench-initial-sync: bench-deps bench-build
	@for rep in $$(seq 1 $(BENCH_REPS)); do for n in $(BENCH_SYNC_SIZES); do for system in tidepool automerge-repo; do \
		echo "run $$rep/$(BENCH_REPS): $$system, initial sync of $$n records" >&2; \
		python3 bench/run_load.py initial-sync $$system --section initial-sync --records $$n --fields 5 --cap $(BENCH_CAP) || exit 1; \
	done; done; done

bench-report: $(BENCH_VENV)/.installed
	BENCH_TARGETS="$(BENCH_TARGETS)" $(BENCH_VENV)/bin/python bench/report.py
