# Tidepool: `make test` runs every test (installing what it needs); `make bench` the benchmarks.
SHELL := /bin/bash
CARGO ?= cargo
export PROPTEST_CASES ?= 256

.PHONY: test bench deps-rust test-rust test-wasm-check fuzz-build

# Each shell adds its own targets to TEST_TARGETS / BENCH_TARGETS in its fragment.
TEST_TARGETS := deps-rust test-wasm-check test-rust
BENCH_TARGETS := bench-core
include hub/hub.mk wasm/wasm.mk tez-bridge/bridge.mk demo/demo.mk interop/interop.mk

test: $(TEST_TARGETS)
bench: $(BENCH_TARGETS)

deps-rust:
	@rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown

test-wasm-check:
	$(CARGO) check -p tidepool-core --target wasm32-unknown-unknown

test-rust:
	$(CARGO) test --workspace --exclude tidepool-wasm --exclude tidepool-tez-bridge --exclude tidepool-e2e

bench-core:
	$(CARGO) bench -p tidepool-core --bench core

# The fuzz target builds with nightly cargo-fuzz; not part of `make test`.
fuzz-build:
	cd fuzz && cargo +nightly fuzz build frame_decode
