# Tidepool: `make test` runs every test (installing what it needs); `make bench` the benchmarks.
SHELL := /bin/bash
CARGO ?= cargo
export PROPTEST_CASES ?= 256

.PHONY: test bench deps-rust test-rust test-wasm-check fuzz-build

test: deps-rust test-wasm-check test-rust

deps-rust:
	@rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown

test-wasm-check:
	$(CARGO) check -p tidepool-core --target wasm32-unknown-unknown

test-rust:
	$(CARGO) test --workspace --exclude tidepool-wasm

bench:
	$(CARGO) bench -p tidepool-core --bench core

# The fuzz target builds with nightly cargo-fuzz; not part of `make test`.
fuzz-build:
	cd fuzz && cargo +nightly fuzz build frame_decode
