# Make targets for hub; included by the root Makefile.
#
# The hub's unit and integration tests (real binary, real sockets, real SQLite) run as part of
# `test-rust` (`cargo test --workspace`), so no separate test target is added here: running them
# twice would only cost time.

BENCH_TARGETS += bench-hub bench-hub-idle bench-hub-pg

.PHONY: bench-hub bench-hub-idle bench-hub-rss bench-hub-pg hub-pg-deps

# The PostgreSQL tests (storage, exports, three hubs) start a real server from Debian's
# packages: initdb and pg_ctl under /usr/lib/postgresql/N/bin.
HUB_SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
hub-pg-deps:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ($(HUB_SUDO) apt-get update && $(HUB_SUDO) apt-get install -y postgresql)

test-rust: hub-pg-deps

# tidepool-load (tidepool-client) against a release hub: 50 clients, 1,000 records; prints one
# JSON line.
bench-hub:
	CARGO=$(CARGO) hub/bench/load.sh

# Hub RSS per idle connection: 2,000 that never say hello, then 2,000 authenticated ones, each on
# a fresh release hub (IDLE_CONNS to change; HUB_BIN to measure another build). Prints KiB per
# connection and one JSON line.
bench-hub-idle:
	CARGO=$(CARGO) hub/bench/idle.sh

# Peak RSS of a hub holding 1,000,000 documents with a 10,000-document cache (slow: it first
# generates the documents). Not part of `make bench`.
bench-hub-rss:
	$(CARGO) bench -p tidepool-hub --bench rss

# Writes/s and p99 visibility with 1, 2 and 3 hubs on one PostgreSQL over 30 databases, beside
# one hub on SQLite in the same run, and the time from killing an owner to a client writing
# again (release build; prints a Markdown table and a JSON line).
bench-hub-pg: hub-pg-deps
	$(CARGO) bench -p tidepool-hub --bench pg
