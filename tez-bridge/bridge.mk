# Make targets for tez-bridge; included by the root Makefile.
# The DAG runner and the HDFS test cluster are a Maven project; the bridge's integration test
# launches both for real, with the hub binary.
TEST_TARGETS += test-bridge

.PHONY: tez-jvm test-bridge

tez-jvm:
	@command -v mvn >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y maven)
	@# Hadoop and Tez resolve the local host name; make sure it resolves.
	@getent hosts "$$(hostname)" >/dev/null || echo "127.0.0.1 $$(hostname)" >> /etc/hosts
	cd tez-bridge/jvm && mvn -B -q package -DskipTests

# tests/cluster.rs runs the bridge against three hubs on a real PostgreSQL (hub/hub.mk installs it).
test-bridge: tez-jvm hub-pg-deps
	cd tez-bridge/jvm && mvn -B -q test
	$(CARGO) build -p tidepool-hub --bins
	$(CARGO) test -p tidepool-tez-bridge

# End to end at 10k, 100k and 1M records (BRIDGE_BENCH_SIZES, BRIDGE_BENCH_ROUNDS to change):
# snapshot from hub state to HDFS against a raw hdfs-native write, peak RSS of bridge and hub,
# a whole enrich run with its phase split and write-back changes/s. Release builds.
BENCH_TARGETS += bench-bridge
.PHONY: bench-bridge
bench-bridge: tez-jvm
	$(CARGO) build --release -p tidepool-hub --bins
	$(CARGO) bench -p tidepool-tez-bridge --bench bridge

BENCH_TARGETS += bench-session
.PHONY: bench-session
bench-session: tez-jvm
	tez-bridge/jvm/bench-session.sh 5

# Edit-to-result latency of `tidepool-bridge watch` (p50, p99), warm Tez session against a JVM per
# run, in local mode and on the YARN test cluster (WATCH_BENCH_RECORDS, WATCH_BENCH_EDITS,
# WATCH_BENCH_YARN=0 to skip YARN). Release builds.
BENCH_TARGETS += bench-watch
.PHONY: bench-watch
bench-watch: tez-jvm
	$(CARGO) build --release -p tidepool-hub --bins
	$(CARGO) bench -p tidepool-tez-bridge --bench watch
