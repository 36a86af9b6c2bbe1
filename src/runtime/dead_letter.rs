//! Dead letters, whoever writes them (the stream thread or the seed bridge): the headers
//! every one carries (where the record came from and why it could not be processed), and
//! the cut that makes a letter fit on its topic.
//!
//! Invariant: a dead letter always fits on its topic. Its key is cut to a quarter of
//! [`DEAD_LETTER_MAX_BYTES`] (64 KiB), its value to the rest of it, and headers give the
//! original sizes; one bad record therefore never fails a commit, nor stops the partition
//! behind it.

use crate::topology::output::{OutputRecord, Provenance};
use rdkafka::message::{Header, OwnedHeaders};
use tracing::warn;

/// Largest key plus value a dead letter carries; the rest is cut (librdkafka's default
/// `message.max.bytes` is 1 000 000, and headers need room too).
pub const DEAD_LETTER_MAX_BYTES: usize = 256 * 1024;
/// Largest `error.detail` header.
const DETAIL_MAX_BYTES: usize = 1024;

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

/// The key and value of the dead letter `output` (read from input topic `source`), cut to
/// [`DEAD_LETTER_MAX_BYTES`] together (the key to a quarter of it), and its headers: where
/// it came from, why, and the original sizes of what was cut.
pub fn bounded_letter<'a>(
    output: &'a OutputRecord,
    provenance: &Provenance,
    source: &str,
) -> (Option<&'a [u8]>, Option<&'a [u8]>, OwnedHeaders) {
    let (key, key_cut) = bounded(output.key.as_deref(), DEAD_LETTER_MAX_BYTES / 4);
    let (value, value_cut) = bounded(
        output.value.as_deref(),
        DEAD_LETTER_MAX_BYTES - key.map_or(0, <[u8]>::len),
    );
    let mut headers = headers(
        source,
        i64::from(provenance.meta.partition),
        provenance.meta.offset,
        provenance.reason,
        bounded_text(&provenance.detail, DETAIL_MAX_BYTES),
    );
    for (cut, name, original) in [
        (key_cut, "error.key.bytes", &output.key),
        (value_cut, "error.value.bytes", &output.value),
    ] {
        if cut {
            let len = original.as_ref().map_or(0, Vec::len).to_string();
            headers = headers.insert(Header {
                key: name,
                value: Some(len.as_str()),
            });
        }
    }
    if key_cut || value_cut {
        warn!(
            source,
            partition = provenance.meta.partition,
            offset = provenance.meta.offset,
            "dead letter too large to carry whole; sent cut, with its original size in headers"
        );
    }
    (key, value, headers)
}

/// `bytes` cut to `max` bytes, and whether it was cut.
fn bounded(bytes: Option<&[u8]>, max: usize) -> (Option<&[u8]>, bool) {
    match bytes {
        Some(b) if b.len() > max => (Some(&b[..max]), true),
        other => (other, false),
    }
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn bounded_text(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_cut_bytes_and_text_on_a_character_boundary() {
        assert_eq!(bounded(Some(b"abcdef"), 4), (Some(&b"abcd"[..]), true));
        assert_eq!(bounded(Some(b"ab"), 4), (Some(&b"ab"[..]), false));
        assert_eq!(bounded(None, 4), (None, false));
        assert_eq!(bounded_text("aé", 2), "a");
        assert_eq!(bounded_text("abc", 5), "abc");
    }
}
