//! Nothing but the end-to-end test in `tests/`; see the crate description.
