//! What the credit check remembers of a partition's decided order ids in memory: a
//! blocked Bloom filter that answers "never decided here" without a store read, which is
//! the answer for almost every order (a repeat is a client's retry or a replay).
//!
//! The filter is built by the expiry sweep: a sweep's pass over the partition's order
//! entries adds every entry it keeps, and every order decided while the pass runs is
//! added as well; once the pass reaches the last entry, the filter it built holds every
//! order id in the store and replaces the one in use. Until a first pass has completed
//! (a task that has just started), every look-up goes to the store.
//!
//! Invariant: while a filter is in use, every order id the partition's store holds is in
//! it. A wrong "maybe" costs a store read; a wrong "never" is impossible, so an order id
//! is decided at most once whether the filter is there or not. The runtime tells the
//! processor when a task starts or stops ([`Processor::forget`]); the store may have
//! changed outside the processor then (restored, rolled back), and the filter goes.
//!
//! [`Processor::forget`]: super::processor::Processor::forget

/// Bits per expected entry: about 1 % false "maybe" answers.
const BITS_PER_ENTRY: usize = 10;
/// Bits each entry sets, all in one 512-bit block (one cache line).
const HASHES: u32 = 7;
/// 512-bit blocks, as u64 words.
const BLOCK_WORDS: usize = 8;
/// The smallest filter: 2^16 bits (8 KiB).
const MIN_BITS: usize = 1 << 16;
/// The largest filter: 2^26 bits (8 MiB), enough for about 6.7 M entries at 1 %. A
/// partition holding more gets more false "maybe" answers, never a wrong "never".
const MAX_BITS: usize = 1 << 26;
/// What a partition's first pass sizes its filter for.
const FIRST_PASS_ENTRIES: usize = 1 << 20;

/// A blocked Bloom filter over order ids.
#[derive(Debug, Clone)]
pub struct OrderIdFilter {
    words: Vec<u64>,
    /// Blocks in the filter, minus one (a power of two).
    block_mask: u64,
    entries: usize,
}

impl OrderIdFilter {
    /// A filter for about `entries` ids at the false-"maybe" rate above.
    pub fn with_capacity(entries: usize) -> Self {
        let bits = entries
            .saturating_mul(BITS_PER_ENTRY)
            .clamp(MIN_BITS, MAX_BITS)
            .next_power_of_two();
        let blocks = bits / (BLOCK_WORDS * 64);
        Self {
            words: vec![0; blocks * BLOCK_WORDS],
            block_mask: blocks as u64 - 1,
            entries: 0,
        }
    }

    pub fn insert(&mut self, order_id: i64) {
        let (block, mut bits) = self.locate(order_id);
        for _ in 0..HASHES {
            let bit = (bits & 511) as usize;
            self.words[block + bit / 64] |= 1 << (bit % 64);
            bits = bits.rotate_right(9);
        }
        self.entries += 1;
    }

    /// False: `order_id` was never inserted. True: it may have been.
    pub fn may_contain(&self, order_id: i64) -> bool {
        let (block, mut bits) = self.locate(order_id);
        for _ in 0..HASHES {
            let bit = (bits & 511) as usize;
            if self.words[block + bit / 64] & (1 << (bit % 64)) == 0 {
                return false;
            }
            bits = bits.rotate_right(9);
        }
        true
    }

    /// Ids inserted, repeats counted.
    pub fn entries(&self) -> usize {
        self.entries
    }

    /// The first word of the id's block, and the bits that choose its bits in the block.
    fn locate(&self, order_id: i64) -> (usize, u64) {
        let h = mix(order_id as u64);
        let block = ((h >> 32) & self.block_mask) as usize * BLOCK_WORDS;
        (block, mix(h))
    }
}

/// A 64-bit finaliser (the murmur3 one): every input bit moves every output bit.
fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// A partition's filters: the one in use, if a pass has completed since the task started,
/// and the one the current pass builds.
#[derive(Debug, Clone, Default)]
pub struct DecidedOrders {
    complete: Option<OrderIdFilter>,
    building: Option<OrderIdFilter>,
}

impl DecidedOrders {
    /// False: the partition's store does not hold `order_id`. True: it may.
    pub fn may_hold(&self, order_id: i64) -> bool {
        self.complete.as_ref().is_none_or(|f| f.may_contain(order_id))
    }

    /// An order id the processor has just written to the store.
    pub fn decided(&mut self, order_id: i64) {
        for filter in [&mut self.complete, &mut self.building].into_iter().flatten() {
            filter.insert(order_id);
        }
    }

    /// A sweep's pass starts at the first order entry.
    pub fn pass_started(&mut self) {
        let entries = self
            .complete
            .as_ref()
            .map_or(FIRST_PASS_ENTRIES, |f| f.entries().saturating_mul(2));
        self.building = Some(OrderIdFilter::with_capacity(entries));
    }

    /// An entry the sweep's pass looked at and kept.
    pub fn kept(&mut self, order_id: i64) {
        if let Some(filter) = &mut self.building {
            filter.insert(order_id);
        }
    }

    /// The sweep's pass has looked at every entry: what it built is now complete.
    pub fn pass_completed(&mut self) {
        if let Some(built) = self.building.take() {
            self.complete = Some(built);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inserted_id_is_always_found() {
        let mut filter = OrderIdFilter::with_capacity(10_000);
        for id in (0..10_000).map(|i| i * 7_919 - 3_000_000) {
            filter.insert(id);
        }
        assert!((0..10_000)
            .map(|i| i * 7_919 - 3_000_000)
            .all(|id| filter.may_contain(id)));
    }

    #[test]
    fn ids_never_inserted_are_mostly_answered_never() {
        let mut filter = OrderIdFilter::with_capacity(100_000);
        for id in 1..=100_000 {
            filter.insert(id);
        }
        let maybes = (1_000_001..=1_100_000).filter(|&id| filter.may_contain(id)).count();
        assert!(maybes < 3_000, "{maybes} false maybes in 100 000");
    }

    #[test]
    fn without_a_completed_pass_every_id_may_be_held() {
        let mut orders = DecidedOrders::default();
        orders.decided(5);
        orders.pass_started();
        orders.kept(5);
        assert!(orders.may_hold(7), "no pass has completed: the store must be asked");
        orders.decided(6);
        orders.pass_completed();
        assert!(orders.may_hold(5) && orders.may_hold(6));
    }

    #[test]
    fn a_completed_pass_holds_what_it_kept_and_what_was_decided_meanwhile() {
        let mut orders = DecidedOrders::default();
        orders.pass_started();
        orders.kept(1);
        orders.decided(2);
        orders.pass_completed();
        orders.decided(3);
        assert!([1, 2, 3].iter().all(|&id| orders.may_hold(id)));
        let absent = (1_000..2_000).filter(|&id| !orders.may_hold(id)).count();
        assert!(absent > 900, "only {absent} of 1000 absent ids answered never");
        // The next pass keeps 1 only (2 and 3 expired): 2 and 3 may now be answered never.
        orders.pass_started();
        orders.kept(1);
        orders.pass_completed();
        assert!(orders.may_hold(1));
    }
}
