//! Test harness: a deterministic, seeded simulated network that drives client engines and a hub
//! engine from `tidepool-core`, with message loss, duplication, reordering, partitions and
//! restarts with or without storage.

pub mod sim;
