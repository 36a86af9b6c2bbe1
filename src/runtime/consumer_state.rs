//! What a consumer already knows without asking the broker: the watermarks its last fetch
//! response carried for a partition, the position the application consumed a partition to
//! (assigned or not), and its member id in the group. rust-rdkafka offers none of these,
//! so this file calls librdkafka's C API (as `group_members` does, for a group's
//! description that a broker which does not answer cannot hold back).
//! Invariant: nothing here blocks or sends a request; a value not known yet is `None`.

use rdkafka::bindings;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};
use std::ffi::{CStr, CString};

/// The low and high watermarks of `topic`/`partition` from the last fetch response, if a
/// fetch has answered yet. Under `read_committed` the consumer's position stops at the
/// last stable offset, so a position below the high watermark means records exist that
/// were not consumed yet (or are held by an open transaction).
pub fn cached_watermarks<C: ConsumerContext + 'static>(
    consumer: &impl Consumer<C>,
    topic: &str,
    partition: i32,
) -> Option<(i64, i64)> {
    let topic = CString::new(topic).ok()?;
    let (mut low, mut high) = (-1_i64, -1_i64);
    // SAFETY: the client pointer is valid while `consumer` lives; the topic is a valid C
    // string; librdkafka only writes the two offsets and takes a lock of its own.
    let err = unsafe {
        bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (err == bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0).then_some((low.max(0), high))
}

/// How far the application consumed `topic`/`partition` (the next offset), whether or not
/// it is assigned now; `None` when nothing was consumed since its fetch last started.
/// librdkafka resets this position only once a removed partition's fetcher has stopped,
/// which happens after the unassign call returned, and from then on moves it only
/// forward, with records and transaction markers alike: a partition read again lower must
/// not be added before this says `None`, or the old read's position would stand for it.
pub fn app_position<C: ConsumerContext + 'static>(
    consumer: &impl Consumer<C>,
    topic: &str,
    partition: i32,
) -> Option<i64> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    // SAFETY: both pointers are valid while `consumer` and `tpl` live; librdkafka only
    // writes each element's offset and error, under the partition's own lock.
    unsafe {
        bindings::rd_kafka_position(consumer.client().native_ptr(), tpl.ptr());
    }
    match tpl.find_partition(topic, partition)?.offset() {
        Offset::Offset(next) => Some(next),
        _ => None,
    }
}

/// This consumer's member id in its group, once it has joined.
pub fn member_id<C: ConsumerContext>(consumer: &BaseConsumer<C>) -> Option<String> {
    let client = consumer.client().native_ptr();
    // SAFETY: the client pointer is valid while `consumer` lives; librdkafka returns NULL
    // or a string it allocated, which is copied and then released with its own allocator.
    unsafe {
        let raw = bindings::rd_kafka_memberid(client);
        if raw.is_null() {
            return None;
        }
        let id = CStr::from_ptr(raw).to_string_lossy().into_owned();
        bindings::rd_kafka_mem_free(client, raw.cast());
        (!id.is_empty()).then_some(id)
    }
}
