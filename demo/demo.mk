# Make targets for the demo app (demo/) and the end-to-end test (e2e/); included by the root Makefile.
#
# demo-site  the app and the optimized ES module, ready to serve (the hub serves it: --static-dir)
# run        the hub serving the demo app, and `tidepool-bridge watch` on local Tez (demo/run.sh)
# test-e2e   the demo app in headless Chromium against a hub, a MiniDFSCluster and Tez (e2e/)
# test-demo-offline  the demo opens from its service worker while the hub is down, and its
#            offline edits sync when the hub is back (demo/tests/offline.mjs, Node + chromedriver)

TEST_TARGETS += test-e2e test-demo-offline
DEMO_SITE = $(WASM_TARGET_DIR)/demo-site

.PHONY: demo-site run test-e2e test-demo-offline

demo-site: wasm-pkg
	rm -rf $(DEMO_SITE)
	mkdir -p $(DEMO_SITE)/pkg
	cp demo/index.html demo/app.js demo/style.css demo/sw.js $(DEMO_SITE)/
	cp wasm/pkg/tidepool_wasm.js wasm/pkg/tidepool_wasm_bg.wasm wasm/pkg/tidepool_wasm.d.ts $(DEMO_SITE)/pkg/

run: demo-site tez-jvm
	$(CARGO) build --release -p tidepool-hub -p tidepool-tez-bridge --bins
	demo/run.sh $(DEMO_SITE) $(WASM_TARGET_DIR)/release tez-bridge/jvm/target

test-e2e: demo-site tez-jvm
	$(CARGO) build -p tidepool-hub -p tidepool-tez-bridge --bins
	TIDEPOOL_DEMO_SITE=$(DEMO_SITE) CHROMEDRIVER=$(CHROMEDRIVER) $(CARGO) test -p tidepool-e2e

test-demo-offline: demo-site wasm-deps
	@command -v node >/dev/null || ($(WASM_SUDO) apt-get update && $(WASM_SUDO) apt-get install -y nodejs)
	$(CARGO) build -p tidepool-hub --bin tidepool-hub
	node demo/tests/offline.mjs $(WASM_TARGET_DIR)/debug/tidepool-hub $(DEMO_SITE) $(CHROMEDRIVER)
