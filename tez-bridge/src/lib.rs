//! Tidepool's bridge: consistent snapshots of a store to HDFS (or a local directory), Apache Tez
//! DAGs over them, and exactly-once write-back of the results as Automerge changes.
//!
//! A run goes snapshot -> Tez -> write-back, each phase recorded in the run's `state.json` so
//! `status` can tell where every run stands and a failed phase writes nothing back.

pub mod fs;
pub mod heads;
pub mod job;
pub mod link;
pub mod output;
pub mod owner;
pub mod plan;
pub mod run;
pub mod scratch;
pub mod session;
pub mod snapshot;
pub mod test_cluster;
pub mod tez;
pub mod watch;
