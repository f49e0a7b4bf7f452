//! Fuzzes the wire decoder: arbitrary bytes must decode or fail, never panic, and whatever
//! decodes must re-encode to a frame that decodes to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidepool_core::wire::{Limits, decode, encode};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    if let Ok(message) = decode(data, &limits) {
        let again = decode(&encode(&message), &limits);
        assert_eq!(again.as_ref(), Ok(&message));
    }
});
