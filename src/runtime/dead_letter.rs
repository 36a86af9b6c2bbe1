//! The headers every dead letter carries, whoever writes it (the stream thread or the seed
//! bridge): where the record came from and why it could not be processed. The record's
//! own key and value travel unchanged.

use rdkafka::message::{Header, OwnedHeaders};

/// `source.topic`, `source.partition`, `source.offset`, `error.reason`, `error.detail`.
pub fn headers(source_topic: &str, partition: i64, offset: i64, reason: &str, detail: &str) -> OwnedHeaders {
    let partition = partition.to_string();
    let offset = offset.to_string();
    [
        ("source.topic", source_topic),
        ("source.partition", partition.as_str()),
        ("source.offset", offset.as_str()),
        ("error.reason", reason),
        ("error.detail", detail),
    ]
    .into_iter()
    .fold(OwnedHeaders::new(), |headers, (key, value)| {
        headers.insert(Header {
            key,
            value: Some(value),
        })
    })
}
