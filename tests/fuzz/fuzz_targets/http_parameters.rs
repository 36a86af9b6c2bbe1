//! Any text as a query string, a dict literal or a JSON body: every request parser answers
//! with a value or a 4xx, never a panic.
#![no_main]

include!("pure.rs");

use libfuzzer_sys::fuzz_target;
use crate::ingest::dict_literal::parse_dict;
use crate::ingest::ids::IdGenerator;
use crate::ingest::requests::{parse_query, rest_create_user, rest_order, seed_order, seed_user};

fuzz_target!(|data: &[u8]| {
    let ids = IdGenerator::new(1);
    let _ = rest_order(data, None, &ids, 0);
    let _ = rest_create_user(data, &ids);
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = parse_dict(text);
    if let Ok(params) = parse_query(text) {
        if let Err(e) = seed_order(&params, &ids, 0) {
            assert!((400..500).contains(&e.status));
        }
        if let Err(e) = seed_user(&params, &ids) {
            assert!((400..500).contains(&e.status));
        }
    }
});
