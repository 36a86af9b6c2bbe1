//! Any bytes as key and value of either input topic, on any partition: the codec answers
//! with an input or a dead-letter reason, never a panic; the seed decoders likewise.
#![no_main]

include!("pure.rs");

use libfuzzer_sys::fuzz_target;
use crate::topology::codec::{decode, InputTopic, RawRecord};
use crate::topology::processor::RecordMeta;
use crate::topology::seed::{decode_seed_order, decode_seed_user};

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let split = (data[0] as usize) % data.len();
    let (key, value) = data[1..].split_at(split.min(data.len() - 1));
    for topic in [InputTopic::UserCommands, InputTopic::Orders] {
        let raw = RawRecord {
            topic,
            meta: RecordMeta { partition: u32::from(data[0] % 6), offset: 0, timestamp_ms: 0 },
            key: (!key.is_empty()).then(|| key.to_vec()),
            value: Some(value.to_vec()),
        };
        let _ = decode(&raw, 6);
    }
    let _ = decode_seed_order(value, 1, 0);
    let _ = decode_seed_user(value, 1);
});
