//! Conversions between JavaScript values and core's types, and the few browser globals used.

pub mod channel;
pub mod global;
pub mod key;
pub mod lock;
pub mod patch;
pub mod path;
pub mod value;
