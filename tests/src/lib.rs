//! Test harness: a deterministic simulated network of core peers and a hub.
