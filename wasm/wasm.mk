# Make targets for the browser client (wasm/); included by the root Makefile.
#
# test-wasm   host unit tests; the ES module build (wasm-bindgen --target web, with TypeScript
#             types); browser tests in headless Chromium through wasm-bindgen-test: without a hub,
#             then against two real hubs started by wasm/scripts/with-hubs.sh; then several tabs
#             of one database in Chromium (test-wasm-tabs).
# bench-wasm  bulkPut vs raw IndexedDB and cold open, in Chromium, optimized build; prints the
#             figures and the size of the ES module bundle.
# bench-wasm-tabs  tabs of one database, optimized build: cross-tab visibility of a put (p50, p99)
#             against same-tab and a plain BroadcastChannel, takeover time against a plain Web Lock.
# wasm-pkg    the optimized ES module and its types in wasm/pkg.
# npm-pack    the npm package (@tidepool/browser) from wasm/pkg: target/npm/tidepool-browser-*.tgz.
# test-npm    that tarball installed into a tiny app with esbuild from npm, bundled, served by a
#             real hub and run in headless Chromium: put, update, synced to a second page.
#
# Everything the targets need is installed when missing: the wasm32 target, wasm-bindgen-cli at
# the exact version the crate pins, and Debian's chromium and chromium-driver.

TEST_TARGETS += test-wasm test-npm
BENCH_TARGETS += bench-wasm bench-wasm-tabs

WASM_BINDGEN_VERSION := 0.2.130
CHROMEDRIVER ?= /usr/bin/chromedriver
WASM_SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# The browser tests run in one page, one after another; the default 20 s is for all of them.
WASM_TEST_ENV := CHROMEDRIVER=$(CHROMEDRIVER) WASM_BINDGEN_TEST_TIMEOUT=600
WASM_CARGO_TARGET := --target wasm32-unknown-unknown
# The bundle and the benchmark are built like a release: one codegen unit, LTO, no debug info.
WASM_RELEASE_ENV := CARGO_PROFILE_RELEASE_LTO=true CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 CARGO_PROFILE_RELEASE_DEBUG=0
WASM_TARGET_DIR = $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)

.PHONY: npm-pack test-npm wasm-deps test-wasm test-wasm-unit test-wasm-module test-wasm-local test-wasm-sync test-wasm-tabs bench-wasm bench-wasm-tabs wasm-pkg

wasm-deps:
	@rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
	@wasm-bindgen --version 2>/dev/null | grep -qF " $(WASM_BINDGEN_VERSION)" || $(CARGO) install wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION)
	@[ -x "$(CHROMEDRIVER)" ] || ($(WASM_SUDO) apt-get update && $(WASM_SUDO) apt-get install -y chromium chromium-driver)

test-wasm: test-wasm-unit test-wasm-module test-wasm-local test-wasm-sync test-wasm-tabs

test-wasm-unit:
	$(CARGO) test -p tidepool-wasm --lib

# The generated module must declare the API and its types.
test-wasm-module: wasm-deps
	$(CARGO) build -p tidepool-wasm $(WASM_CARGO_TARGET)
	rm -rf $(WASM_TARGET_DIR)/wasm-module-check
	wasm-bindgen --target web --out-dir $(WASM_TARGET_DIR)/wasm-module-check $(WASM_TARGET_DIR)/wasm32-unknown-unknown/debug/tidepool_wasm.wasm
	@for api in 'export class Tidepool' 'bulkPut(' 'update(' 'TidepoolChanges' 'spliceText(' 'whenSynced(' 'static open(options: OpenOptions): Promise<Tidepool>' 'export interface ChangeEvent'; do \
	  grep -qF "$$api" $(WASM_TARGET_DIR)/wasm-module-check/tidepool_wasm.d.ts || { echo "tidepool_wasm.d.ts lacks: $$api"; exit 1; }; \
	done

test-wasm-local: wasm-deps
	cd wasm && $(WASM_TEST_ENV) $(CARGO) test $(WASM_CARGO_TARGET) --test local

test-wasm-sync: wasm-deps
	cd wasm && CARGO=$(CARGO) ./scripts/with-hubs.sh env $(WASM_TEST_ENV) $(CARGO) test $(WASM_CARGO_TARGET) --test sync

# Real tabs of one database, served by a real hub: writes everywhere, the leader tab closed and
# then crashed (CDP Page.crash) in the middle of bursts of writes (wasm/scripts/tabs-test.mjs).
test-wasm-tabs: test-wasm-module
	@command -v node >/dev/null || ($(WASM_SUDO) apt-get update && $(WASM_SUDO) apt-get install -y nodejs)
	$(CARGO) build -p tidepool-hub --bin tidepool-hub
	node wasm/scripts/tabs-test.mjs $(WASM_TARGET_DIR)/wasm-module-check $(WASM_TARGET_DIR)/debug/tidepool-hub $(CHROMEDRIVER)

wasm-pkg: wasm-deps
	$(WASM_RELEASE_ENV) $(CARGO) build -p tidepool-wasm --release $(WASM_CARGO_TARGET)
	rm -rf wasm/pkg
	wasm-bindgen --target web --remove-name-section --remove-producers-section --out-dir wasm/pkg $(WASM_TARGET_DIR)/wasm32-unknown-unknown/release/tidepool_wasm.wasm
	@raw=$$(wc -c < wasm/pkg/tidepool_wasm_bg.wasm); gz=$$(gzip -9 -c wasm/pkg/tidepool_wasm_bg.wasm | wc -c); \
	  echo "wasm bundle: $$raw bytes raw, $$gz bytes gzip -9 (wasm/pkg/tidepool_wasm_bg.wasm)"

bench-wasm: wasm-pkg
	set -o pipefail; cd wasm && $(WASM_RELEASE_ENV) $(WASM_TEST_ENV) $(CARGO) test --release $(WASM_CARGO_TARGET) --test bench -- --nocapture 2>&1 | grep -E '^BENCH|test result'

bench-wasm-tabs: wasm-pkg
	@command -v node >/dev/null || ($(WASM_SUDO) apt-get update && $(WASM_SUDO) apt-get install -y nodejs)
	$(CARGO) build -p tidepool-hub --bin tidepool-hub
	node wasm/scripts/tabs-bench.mjs wasm/pkg $(WASM_TARGET_DIR)/debug/tidepool-hub $(CHROMEDRIVER)

NPM_OUT = $(WASM_TARGET_DIR)/npm
WASM_VERSION = $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)

npm-pack: wasm-pkg
	@command -v npm >/dev/null || ($(WASM_SUDO) apt-get update && $(WASM_SUDO) apt-get install -y nodejs npm)
	rm -f $(NPM_OUT)/*.tgz
	node wasm/scripts/npm-pack.mjs wasm/pkg $(NPM_OUT) $(WASM_VERSION)

test-npm: npm-pack
	$(CARGO) build -p tidepool-hub --bin tidepool-hub
	node wasm/scripts/npm-test.mjs $$(ls $(NPM_OUT)/*.tgz) $(WASM_TARGET_DIR)/debug/tidepool-hub $(CHROMEDRIVER)
