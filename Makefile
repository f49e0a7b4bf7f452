# Tidepool: `make test` runs every test (installing what it needs); `make bench` the benchmarks.
SHELL := /bin/bash
CARGO ?= cargo
export PROPTEST_CASES ?= 256

.PHONY: test bench deps-rust test-deps test-rust test-wasm-check fuzz-build

# Each shell adds its own targets to TEST_TARGETS / BENCH_TARGETS in its fragment.
TEST_TARGETS := deps-rust test-deps test-wasm-check test-rust
BENCH_TARGETS := bench-core
include hub/hub.mk wasm/wasm.mk tez-bridge/bridge.mk demo/demo.mk interop/interop.mk bench/bench.mk

test: $(TEST_TARGETS)
# Each benchmark target runs through bench/capture.sh, which keeps its result lines (a failing one
# is recorded as not measured and the others still run); then BENCHMARKS.md is regenerated.
bench:
	@for t in $(BENCH_TARGETS); do bench/capture.sh $$t; done
	$(MAKE) --no-print-directory bench-report

deps-rust:
	@rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown

# The crate dependency rule (ARCHITECTURE.md): crate, then the packages it must not reach
# through normal dependencies, on any target. `cargo tree` resolves without building, so this
# takes about a second.
FORBIDDEN_DEPS := \
	tidepool-core:tokio,axum,rusqlite,serde_json \
	tidepool-json:tokio,tidepool-hub,axum,rusqlite,postgres,jsonwebtoken,tower-http \
	tidepool-client:tidepool-hub,axum,rusqlite,postgres,jsonwebtoken,tower-http \
	tidepool-tez-bridge:tidepool-hub,axum,rusqlite,postgres,jsonwebtoken,tower-http

test-deps:
	@broken=0; \
	for rule in $(FORBIDDEN_DEPS); do \
		crate=$${rule%%:*}; \
		tree=$$($(CARGO) tree -q -e normal --target all -p $$crate --prefix none --format '{p}') || exit 1; \
		for dep in $$(echo "$${rule#*:}" | tr , ' '); do \
			if grep -q "^$$dep v" <<< "$$tree"; then \
				echo "crate dependency rule broken: $$crate must not depend on $$dep (ARCHITECTURE.md), but does through:" >&2; \
				$(CARGO) tree -q -e normal --target all -p $$crate -i $$dep >&2; \
				broken=1; \
			fi; \
		done; \
	done; \
	[ $$broken = 0 ] && echo "crate dependency rule holds: $(foreach r,$(FORBIDDEN_DEPS),$(firstword $(subst :, ,$(r))))"

test-wasm-check:
	$(CARGO) check -p tidepool-core --target wasm32-unknown-unknown

test-rust:
	$(CARGO) test --workspace --exclude tidepool-wasm --exclude tidepool-tez-bridge --exclude tidepool-e2e

bench-core:
	$(CARGO) bench -p tidepool-core --bench core

# The fuzz target builds with nightly cargo-fuzz; not part of `make test`.
fuzz-build:
	cd fuzz && cargo +nightly fuzz build frame_decode
