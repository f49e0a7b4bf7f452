//! Tez bridge: snapshots to HDFS, Tez DAGs, write-back (filled by the bridge work).
