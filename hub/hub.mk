# Make targets for hub; included by the root Makefile.
#
# The hub's unit and integration tests (real binary, real sockets, real SQLite) run as part of
# `test-rust` (`cargo test --workspace`), so no separate test target is added here: running them
# twice would only cost time.

BENCH_TARGETS += bench-hub bench-hub-idle

.PHONY: bench-hub bench-hub-idle bench-hub-rss

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
