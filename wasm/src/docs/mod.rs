//! Documents: where their bytes live in IndexedDB, which are in memory, and how they reach the
//! sync engine.

pub mod adapter;
pub mod cache;
pub mod known;
pub mod load;
pub mod pack;
