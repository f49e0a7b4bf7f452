# Make targets for the Automerge JS interop test (interop/); included by the root Makefile.
#
# interop-deps  node and npm (Debian's, when missing), then `npm ci` in interop/ when
#               node_modules is missing or older than package.json / package-lock.json
# test-interop  Tidepool documents and changes against @automerge/automerge, through the real
#               hub (hub/tests/automerge_js.rs)
#
# `test-rust` runs every hub test, this one included, so `make test` only installs the packages
# first: interop-deps is listed first and is a prerequisite of test-rust (which holds under make
# -j too). `make test-interop` runs the interop test alone.

TEST_TARGETS := interop-deps $(TEST_TARGETS)
INTEROP_SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
INTEROP_STAMP := interop/node_modules/.installed

.PHONY: interop-deps test-interop

interop-deps: $(INTEROP_STAMP)

$(INTEROP_STAMP): interop/package.json interop/package-lock.json
	@command -v npm >/dev/null || ($(INTEROP_SUDO) apt-get update && $(INTEROP_SUDO) apt-get install -y nodejs npm)
	cd interop && npm ci --no-audit --no-fund
	touch $@

test-rust: interop-deps

test-interop: interop-deps
	$(CARGO) test -p tidepool-hub --test automerge_js
