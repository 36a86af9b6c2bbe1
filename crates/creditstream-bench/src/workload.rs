//! The benchmark's input and what it must lead to. Users 1..=N are created first, each
//! with the same balance (and credit limit); order n (0-based) has id n + 1, the uid the
//! sampler draws for n and amount (n mod 97) + 1. The input is the same for every system
//! and repetition, so the decision of every order is known in advance: a user's orders are
//! decided in order-id order (they share a partition and are produced in that order), and
//! an order completes exactly when the balance left covers it.
//! Invariant: [`Reference`] is computed from this description alone, never from any
//! system's output, so it judges every system alike.

use crate::load::{self, Outgoing};
use crate::uids::{UidDistribution, UidSampler};
use creditstream::topology::codec::{encode_command, encode_order};
use creditstream::topology::partitioner::partition_for;
use creditstream::topology::record::{Order, OrderStatus, UserCommand, UserRow};

/// The balance every user starts with when each gets about 10 orders (average amount 49):
/// nearly nine in ten orders complete, as in the runs before.
pub const BASE_BALANCE: i64 = 500;

/// One run's input.
pub struct Workload {
    pub users: u64,
    pub initial_balance: i64,
    sampler: UidSampler,
}

/// What an order must be decided as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    pub completed: bool,
    pub balance_after: i64,
}

/// The decision of every order of a run, by order id − 1.
pub struct Reference {
    pub expected: Vec<Expected>,
    pub completed: u64,
}

impl Workload {
    /// A workload whose users can afford about as large a share of `orders` as the
    /// throughput runs' (the latency runs send more orders per user, so their users start
    /// richer and the mix of Completed and Declined stays alike).
    pub fn new(users: u64, orders: u64, uids: UidDistribution) -> Self {
        let users = users.max(1);
        let per_user = orders.div_ceil(users).max(1) as i64;
        Self {
            users,
            initial_balance: (50 * per_user).max(BASE_BALANCE),
            sampler: UidSampler::new(users, uids),
        }
    }

    pub fn order(&self, n: u64) -> Order {
        Order {
            order_id: n as i64 + 1,
            uid: self.sampler.uid(n),
            amount: (n % 97) as i64 + 1,
            timestamp_ms: load::now_ms(),
        }
    }

    /// Order n as a record for a topic of `partitions` partitions (stamped now).
    pub fn order_record(&self, n: u64, partitions: u32) -> Outgoing {
        let (key, value) = encode_order(&self.order(n));
        Outgoing {
            partition: partition_for(&key, partitions) as i32,
            key,
            value,
        }
    }

    /// The create command of user `i + 1`.
    pub fn user_record(&self, i: u64, partitions: u32) -> Outgoing {
        let uid = i as i64 + 1;
        let command = UserCommand::Create {
            command_id: uid,
            user: UserRow {
                uid,
                name: format!("U{uid}"),
                lname: "Bench".into(),
                credit_limit: self.initial_balance,
                credit_balance: self.initial_balance,
            },
        };
        let (key, value) = encode_command(&command);
        Outgoing {
            partition: partition_for(&key, partitions) as i32,
            key,
            value,
        }
    }

    /// The decisions of orders 0..`orders`.
    pub fn reference(&self, orders: u64) -> Reference {
        let mut balances = vec![self.initial_balance; self.users as usize + 1];
        let mut completed = 0;
        let expected = (0..orders)
            .map(|n| {
                let uid = self.sampler.uid(n) as usize;
                let amount = (n % 97) as i64 + 1;
                let balance = &mut balances[uid.min(self.users as usize)];
                let ok = *balance >= amount;
                if ok {
                    *balance -= amount;
                    completed += 1;
                }
                Expected {
                    completed: ok,
                    balance_after: *balance,
                }
            })
            .collect();
        Reference { expected, completed }
    }
}

impl Reference {
    /// Whether a decision is the one expected; `Err` says how it differs.
    pub fn check(&self, order_id: i64, status: OrderStatus, balance_after: Option<i64>) -> Result<(), String> {
        let Some(want) = usize::try_from(order_id - 1).ok().and_then(|i| self.expected.get(i)) else {
            return Err(format!("order {order_id} was never sent"));
        };
        let completed = status == OrderStatus::Completed;
        if completed != want.completed || balance_after != Some(want.balance_after) {
            return Err(format!(
                "order {order_id}: {} with balance {balance_after:?}, expected {} with balance {}",
                status.as_str(),
                if want.completed { "Completed" } else { "Declined" },
                want.balance_after
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_throughput_mix_keeps_the_base_balance_and_mostly_completes() {
        let w = Workload::new(1000, 10_000, UidDistribution::Uniform);
        assert_eq!(w.initial_balance, BASE_BALANCE);
        let r = w.reference(10_000);
        let share = r.completed as f64 / 10_000.0;
        assert!((0.75..0.97).contains(&share), "{share}");
        assert_eq!(r.expected.iter().filter(|e| e.completed).count() as u64, r.completed);
    }

    #[test]
    fn more_orders_per_user_start_richer() {
        let w = Workload::new(100, 10_000, UidDistribution::Uniform);
        assert_eq!(w.initial_balance, 5000);
    }

    #[test]
    fn a_decision_is_checked_against_the_balance_left() {
        let w = Workload::new(1, 20, UidDistribution::Uniform);
        let r = w.reference(20);
        let b = w.initial_balance;
        // One user: amounts 1..=20 sum to 210, less than any balance, so every order completes.
        assert_eq!(r.completed, 20);
        assert!(r.check(1, OrderStatus::Completed, Some(b - 1)).is_ok());
        assert!(r.check(1, OrderStatus::Declined, Some(b)).is_err());
        assert!(r.check(2, OrderStatus::Completed, Some(b - 2)).is_err());
        assert!(r.check(2, OrderStatus::Completed, Some(b - 3)).is_ok());
        assert!(r.check(21, OrderStatus::Completed, Some(0)).is_err());
    }
}
