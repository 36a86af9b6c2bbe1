//! The members of a consumer group and the partitions the group gave each, read with
//! ListGroups and DescribeGroups: the view the state updater places standby tasks from and
//! decides whether a task's previous owner left the group.
//! Invariants: read-only and advisory. A description that cannot be read or decoded yields
//! an error or leaves a member without partitions; it never affects who owns what. A
//! description waits at most its `wait` for any broker: librdkafka asks every broker it
//! knows, and one that froze never answers, but the group is described by its coordinator
//! alone, so what the live brokers said by then is the answer (rust-rdkafka's
//! `fetch_group_list` drops such a partial answer; this file reads librdkafka's own list).

use rdkafka::bindings;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use std::collections::BTreeSet;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::time::Duration;
use tracing::warn;

/// How long a description waits for the brokers. A live coordinator answers in
/// milliseconds; this only bounds the wait on a broker that does not answer.
pub const DESCRIBE_WAIT: Duration = Duration::from_secs(2);

/// One member of the group and the topic-partitions it was assigned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    /// The client id it joined with (a processor replica's transactional id).
    pub client_id: String,
    pub assigned: BTreeSet<(String, u32)>,
}

/// A group's state and members.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Group {
    /// `Stable` once every member has its assignment; `PreparingRebalance`,
    /// `CompletingRebalance`, `Empty` or `Dead` otherwise.
    pub state: String,
    /// Sorted by member id. Assignments are complete only while the group is stable.
    pub members: Vec<Member>,
}

impl Group {
    pub fn is_stable(&self) -> bool {
        self.state == "Stable"
    }
}

/// The state of `group`, its members and their assignments, as its coordinator told within
/// `wait`. A group no live broker knows is empty (`Group::default()`) once every broker
/// answered; if some did not answer by then, the call times out.
pub fn describe<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    group: &str,
    wait: Duration,
) -> Result<Group, KafkaError> {
    let name = CString::new(group).map_err(|_| KafkaError::GroupListFetch(RDKafkaErrorCode::InvalidArgument))?;
    let wait_ms = c_int::try_from(wait.as_millis()).unwrap_or(c_int::MAX);
    let mut list: *const bindings::rd_kafka_group_list = std::ptr::null();
    // SAFETY: the client pointer is valid while `consumer` lives and the name is a valid C
    // string; librdkafka sets `list` only when it returns no error or a partial answer.
    let err = unsafe { list_groups(consumer.client().native_ptr(), name.as_ptr(), &mut list, wait_ms) };
    let code = list_error(err);
    if !matches!(code, RDKafkaErrorCode::NoError | RDKafkaErrorCode::Partial) || list.is_null() {
        return Err(KafkaError::GroupListFetch(code));
    }
    let list = OwnedList(list);
    // SAFETY: `list` is librdkafka's, valid until `OwnedList` destroys it.
    let found = unsafe { read_group(&*list.0, group) };
    match found {
        Listed::Found(found) => Ok(found),
        // Described with an error (its coordinator moving or loading), or by two brokers.
        Listed::Unsettled => Err(KafkaError::GroupListFetch(RDKafkaErrorCode::NotCoordinator)),
        // Only a broker that did not answer could have described it.
        Listed::Absent if code == RDKafkaErrorCode::Partial => {
            Err(KafkaError::GroupListFetch(RDKafkaErrorCode::OperationTimedOut))
        }
        Listed::Absent => Ok(Group::default()),
    }
}

/// librdkafka's list, destroyed however the reading of it ends.
struct OwnedList(*const bindings::rd_kafka_group_list);

impl Drop for OwnedList {
    fn drop(&mut self) {
        // SAFETY: the list librdkafka handed out, destroyed once, here.
        unsafe { bindings::rd_kafka_group_list_destroy(self.0) }
    }
}

extern "C" {
    /// librdkafka's `rd_kafka_list_groups`, declared here with the plain integer it returns:
    /// the code may be any broker's ListGroups error, and the bindings' enum, which does not
    /// name every code a broker can send, would make an unnamed one undefined behaviour.
    #[link_name = "rd_kafka_list_groups"]
    fn list_groups(
        rk: *mut bindings::rd_kafka_t,
        group: *const c_char,
        grplistp: *mut *const bindings::rd_kafka_group_list,
        timeout_ms: c_int,
    ) -> c_int;
}

/// The error code `rd_kafka_list_groups` returned, for the codes it is known to return
/// (librdkafka's own, and the coordinator errors of a ListGroups answer); any other is
/// `Fail`, with the code logged.
fn list_error(raw: c_int) -> RDKafkaErrorCode {
    use bindings::rd_kafka_resp_err_t as E;
    const KNOWN: [E; 9] = [
        E::RD_KAFKA_RESP_ERR_NO_ERROR,
        E::RD_KAFKA_RESP_ERR__PARTIAL,
        E::RD_KAFKA_RESP_ERR__TIMED_OUT,
        E::RD_KAFKA_RESP_ERR__TRANSPORT,
        E::RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN,
        E::RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS,
        E::RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE,
        E::RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
        E::RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED,
    ];
    match KNOWN.into_iter().find(|code| *code as c_int == raw) {
        Some(code) => RDKafkaErrorCode::from(code),
        None => {
            warn!(
                code = raw,
                "describing the group met an error code this build does not name"
            );
            RDKafkaErrorCode::Fail
        }
    }
}

/// What librdkafka's list says of one group.
enum Listed {
    /// One broker (its coordinator) described it without an error.
    Found(Group),
    /// No broker that answered knows it.
    Absent,
    /// A broker described it with an error, or two brokers described it.
    Unsettled,
}

/// librdkafka's `struct rd_kafka_group_info`, with the broker's error code as the plain
/// integer it is: the bindings' struct holds it as their enum, which does not name every
/// code a broker can send, so even a reference to an entry with an unnamed code would be
/// undefined behaviour. The layout is checked against the bindings' at compile time.
#[repr(C)]
struct GroupInfo {
    broker: bindings::rd_kafka_metadata_broker,
    group: *mut c_char,
    err: c_int,
    state: *mut c_char,
    protocol_type: *mut c_char,
    protocol: *mut c_char,
    members: *mut bindings::rd_kafka_group_member_info,
    member_cnt: c_int,
}

const _: () = {
    use bindings::rd_kafka_group_info as Theirs;
    use std::mem::{offset_of, size_of};
    assert!(size_of::<GroupInfo>() == size_of::<Theirs>());
    assert!(size_of::<c_int>() == size_of::<bindings::rd_kafka_resp_err_t>());
    assert!(offset_of!(GroupInfo, group) == offset_of!(Theirs, group));
    assert!(offset_of!(GroupInfo, err) == offset_of!(Theirs, err));
    assert!(offset_of!(GroupInfo, state) == offset_of!(Theirs, state));
    assert!(offset_of!(GroupInfo, members) == offset_of!(Theirs, members));
    assert!(offset_of!(GroupInfo, member_cnt) == offset_of!(Theirs, member_cnt));
};

/// What librdkafka's `list` says of `group`.
///
/// # Safety
/// `list` and every pointer in it are as librdkafka fills them: arrays of their stated
/// lengths, strings NUL-terminated or null, byte buffers of their stated sizes or null.
unsafe fn read_group(list: &bindings::rd_kafka_group_list, group: &str) -> Listed {
    // SAFETY: the same entries, read through the mirror whose error code is an integer.
    let infos = unsafe { slice(list.groups.cast::<GroupInfo>().cast_const(), list.group_cnt) };
    let named: Vec<&GroupInfo> = infos.iter().filter(|g| unsafe { text(g.group) } == group).collect();
    let info = match named.as_slice() {
        [] => return Listed::Absent,
        [info] if info.err == 0 => *info,
        _ => return Listed::Unsettled,
    };
    let mut members: Vec<Member> = unsafe { slice(info.members, info.member_cnt) }
        .iter()
        .map(|m| Member {
            id: unsafe { text(m.member_id) },
            client_id: unsafe { text(m.client_id) },
            assigned: unsafe { bytes(m.member_assignment, m.member_assignment_size) }
                .and_then(assigned_partitions)
                .unwrap_or_default(),
        })
        .collect();
    members.sort_by(|a, b| a.id.cmp(&b.id));
    Listed::Found(Group {
        state: unsafe { text(info.state) },
        members,
    })
}

/// # Safety
/// `items` points to `count` initialised values, or is null.
unsafe fn slice<'a, T>(items: *const T, count: c_int) -> &'a [T] {
    match usize::try_from(count) {
        Ok(count) if !items.is_null() && count > 0 => unsafe { std::slice::from_raw_parts(items, count) },
        _ => &[],
    }
}

/// # Safety
/// `raw` is a NUL-terminated string, or null.
unsafe fn text(raw: *const c_char) -> String {
    if raw.is_null() {
        return String::new();
    }
    unsafe { CStr::from_ptr(raw) }.to_string_lossy().into_owned()
}

/// # Safety
/// `raw` points to `size` bytes, or is null.
unsafe fn bytes<'a>(raw: *const c_void, size: c_int) -> Option<&'a [u8]> {
    let size = usize::try_from(size).ok().filter(|size| *size > 0)?;
    (!raw.is_null()).then(|| unsafe { std::slice::from_raw_parts(raw.cast::<u8>(), size) })
}

/// Reads big-endian fields of Kafka's consumer-protocol encoding.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn i16(&mut self) -> Option<i16> {
        self.take(2).map(|b| i16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self) -> Option<i32> {
        self.take(4).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// The topic-partitions of a consumer-protocol `Assignment` (any version: each has the
/// version, then the assigned partitions by topic, then user data, which is ignored).
pub fn assigned_partitions(bytes: &[u8]) -> Option<BTreeSet<(String, u32)>> {
    let mut r = Reader(bytes);
    let _version = r.i16()?;
    let topics = r.i32()?;
    let mut out = BTreeSet::new();
    for _ in 0..topics.max(0) {
        let len = usize::try_from(r.i16()?).ok()?;
        let name = String::from_utf8(r.take(len)?.to_vec()).ok()?;
        let count = r.i32()?;
        for _ in 0..count.max(0) {
            out.insert((name.clone(), u32::try_from(r.i32()?).ok()?));
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_codes_are_read_as_integers_and_an_unnamed_one_is_a_failure() {
        assert_eq!(list_error(0), RDKafkaErrorCode::NoError);
        assert_eq!(list_error(-158), RDKafkaErrorCode::Partial);
        assert_eq!(list_error(-185), RDKafkaErrorCode::OperationTimedOut);
        assert_eq!(list_error(-195), RDKafkaErrorCode::BrokerTransportFailure);
        assert_eq!(list_error(-187), RDKafkaErrorCode::AllBrokersDown);
        assert_eq!(list_error(14), RDKafkaErrorCode::CoordinatorLoadInProgress);
        assert_eq!(list_error(15), RDKafkaErrorCode::CoordinatorNotAvailable);
        assert_eq!(list_error(16), RDKafkaErrorCode::NotCoordinator);
        assert_eq!(list_error(30), RDKafkaErrorCode::GroupAuthorizationFailed);
        // A code no enum of the bindings names (past Kafka's current ones).
        assert_eq!(list_error(9_999), RDKafkaErrorCode::Fail);
    }

    fn encode(version: i16, topics: &[(&str, &[i32])]) -> Vec<u8> {
        let mut out = version.to_be_bytes().to_vec();
        out.extend((topics.len() as i32).to_be_bytes());
        for (name, partitions) in topics {
            out.extend((name.len() as i16).to_be_bytes());
            out.extend(name.as_bytes());
            out.extend((partitions.len() as i32).to_be_bytes());
            for p in *partitions {
                out.extend(p.to_be_bytes());
            }
        }
        out.extend((-1_i32).to_be_bytes()); // no user data
        out
    }

    #[test]
    fn reads_every_assigned_partition_by_topic() {
        let bytes = encode(3, &[("orders", &[4, 1]), ("seed", &[2])]);
        let expected = [("orders", 1), ("orders", 4), ("seed", 2)].map(|(t, p)| (t.to_string(), p));
        assert_eq!(assigned_partitions(&bytes), Some(BTreeSet::from(expected)));
        assert_eq!(assigned_partitions(&encode(0, &[])), Some(BTreeSet::new()));
    }

    #[test]
    fn a_truncated_assignment_is_refused_not_misread() {
        let bytes = encode(0, &[("orders", &[4, 1])]);
        assert_eq!(assigned_partitions(&bytes[..bytes.len() - 9]), None);
        assert_eq!(assigned_partitions(&[]), None);
    }
}
