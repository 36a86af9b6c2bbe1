//! Any bytes as a stored state value: decoding is an error or a value, never a panic, and
//! whatever decodes encodes back to the same bytes.
#![no_main]

include!("pure.rs");

use libfuzzer_sys::fuzz_target;
use crate::topology::state::{decode, encode, OrderSeen, UserState};

fuzz_target!(|data: &[u8]| {
    if let Ok(user) = decode::<UserState>(data) {
        assert_eq!(decode::<UserState>(&encode(&user)).ok(), Some(user));
    }
    if let Ok(seen) = decode::<OrderSeen>(data) {
        assert_eq!(decode::<OrderSeen>(&encode(&seen)).ok(), Some(seen));
    }
});
