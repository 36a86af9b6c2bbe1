//! Ids generated without coordination: 63-bit, time-ordered, unique per node id.
//! Layout: 41 bits of milliseconds since 2024-01-01, 10 bits of node id, 12 bits of
//! sequence. Ids derived from idempotency keys live above bit 62 and never collide with
//! these (41 bits of milliseconds last until the 2090s).

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// 2024-01-01T00:00:00Z in ms since the Unix epoch.
const EPOCH_MS: i64 = 1_704_067_200_000;
const NODE_BITS: u32 = 10;
const SEQUENCE_BITS: u32 = 12;
const MAX_SEQUENCE: i64 = (1 << SEQUENCE_BITS) - 1;

#[derive(Debug)]
pub struct IdGenerator {
    node: i64,
    /// (millisecond of the last id, sequence within it)
    last: Mutex<(i64, i64)>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl IdGenerator {
    /// `node` must be unique among ingest replicas (0..=1023).
    pub fn new(node: u16) -> Self {
        Self {
            node: i64::from(node) & ((1 << NODE_BITS) - 1),
            last: Mutex::new((0, 0)),
        }
    }

    pub fn next_id(&self) -> i64 {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let mut ms = (now_ms() - EPOCH_MS).max(last.0);
        let sequence = if ms == last.0 {
            if last.1 >= MAX_SEQUENCE {
                // This millisecond is used up: move to the next one (the clock catches up).
                ms += 1;
                0
            } else {
                last.1 + 1
            }
        } else {
            0
        };
        *last = (ms, sequence);
        (ms << (NODE_BITS + SEQUENCE_BITS)) | (self.node << SEQUENCE_BITS) | sequence
    }
}

/// When `id` was minted, in ms since the Unix epoch, if an [`IdGenerator`] can have made it
/// (ids derived from idempotency keys, at bit 62 and above, and ids below 1 were not).
pub fn minted_at_ms(id: i64) -> Option<i64> {
    (1..1 << 62)
        .contains(&id)
        .then(|| (id >> (NODE_BITS + SEQUENCE_BITS)) + EPOCH_MS)
}

/// Whether `id` can be a command some ingest accepted that has not finished yet: minted
/// within `window` before `now_ms`, and not after it (allowing `skew` between the clocks
/// of the ingest replicas). Any other id either finished long ago or was never issued.
pub fn may_be_in_flight(id: i64, now_ms: i64, window_ms: i64, skew_ms: i64) -> bool {
    minted_at_ms(id).is_some_and(|at| at <= now_ms + skew_ms && at >= now_ms - window_ms)
}

/// The order id of a request with an idempotency key: the same on every replica.
pub fn idempotent_order_id(uid: i64, key: &str) -> i64 {
    crate::topology::seed::derived_id(key, 0, uid)
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_id_is_in_flight_only_when_minted_recently_and_not_in_the_future() {
        let ids = super::IdGenerator::new(7);
        let id = ids.next_id();
        let now = super::now_ms();
        let minted = super::minted_at_ms(id).unwrap();
        assert!((now - 1000..=now).contains(&minted));
        assert!(super::may_be_in_flight(id, now, 60_000, 5_000));
        assert!(!super::may_be_in_flight(id, now + 61_000, 60_000, 5_000), "too old");
        assert!(
            !super::may_be_in_flight(id, now - 6_000, 60_000, 5_000),
            "from the future"
        );
        assert!(!super::may_be_in_flight(1, now, 60_000, 5_000), "2024-01-01");
        assert!(!super::may_be_in_flight(1 << 62, now, 60_000, 5_000), "derived");
        assert_eq!(super::minted_at_ms(0), None);
    }

    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_unique_increasing_and_positive() {
        let generator = IdGenerator::new(7);
        let mut seen = HashSet::new();
        let mut previous = 0;
        for _ in 0..20_000 {
            let id = generator.next_id();
            assert!(id > previous);
            assert!(id > 0);
            assert!(seen.insert(id));
            previous = id;
        }
    }

    #[test]
    fn different_nodes_never_collide() {
        let a = IdGenerator::new(1);
        let b = IdGenerator::new(2);
        let ids_a: HashSet<_> = (0..5000).map(|_| a.next_id()).collect();
        assert!((0..5000).map(|_| b.next_id()).all(|id| !ids_a.contains(&id)));
    }

    #[test]
    fn idempotent_ids_are_stable_and_in_their_own_range() {
        assert_eq!(idempotent_order_id(5, "k"), idempotent_order_id(5, "k"));
        assert_ne!(idempotent_order_id(5, "k"), idempotent_order_id(6, "k"));
        assert!(idempotent_order_id(5, "k") >= 1 << 62);
        assert!(IdGenerator::new(0).next_id() < 1 << 62);
    }
}
