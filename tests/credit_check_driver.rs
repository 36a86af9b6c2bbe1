//! The credit-check topology's semantics, through the test driver (no broker).

use creditstream::topology::codec::DeadLetterReason;
use creditstream::topology::codec::{to_json, InputTopic};
use creditstream::topology::driver::TestDriver;
use creditstream::topology::partitioner::{partition_for, uid_key};
use creditstream::topology::record::*;
use creditstream::topology::store::KeyValueStore;

const PARTITIONS: u32 = 6;

fn user(uid: Uid, limit: i64, balance: i64) -> UserRow {
    UserRow {
        uid,
        name: "Arpana".into(),
        lname: "Sharma".into(),
        credit_limit: limit,
        credit_balance: balance,
    }
}

fn create(driver: &mut TestDriver, uid: Uid, limit: i64, balance: i64) {
    driver
        .pipe_command(&UserCommand::Create {
            command_id: uid * 10,
            user: user(uid, limit, balance),
        })
        .unwrap();
}

fn order(driver: &mut TestDriver, order_id: OrderId, uid: Uid, amount: i64) {
    driver
        .pipe_order(&Order {
            order_id,
            uid,
            amount,
            timestamp_ms: 1_000 + order_id,
        })
        .unwrap();
}

fn balance(driver: &TestDriver, uid: Uid) -> Option<i64> {
    driver.user_state(uid).and_then(|s| s.user).map(|u| u.credit_balance)
}

fn rejections(driver: &TestDriver) -> Vec<String> {
    driver
        .user_changes()
        .into_iter()
        .filter_map(|c| match c {
            UserChange::Rejected { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn an_order_within_the_balance_completes_and_reduces_it() {
    let mut d = TestDriver::new(PARTITIONS);
    create(&mut d, 1, 100, 100);
    order(&mut d, 1, 1, 30);
    let decisions = d.decisions();
    assert_eq!(decisions.len(), 1);
    let decision = decisions[0];
    assert_eq!(decision.status, OrderStatus::Completed);
    assert_eq!(decision.note, "Order placed successfully");
    assert_eq!(decision.balance_after, Some(70));
    assert_eq!(decision.amount, 30);
    assert_eq!(decision.order_timestamp_ms, 1_001);
    assert_eq!(balance(&d, 1), Some(70));
}

#[test]
fn an_order_for_exactly_the_balance_completes() {
    let mut d = TestDriver::new(PARTITIONS);
    create(&mut d, 2, 50, 50);
    order(&mut d, 1, 2, 50);
    assert_eq!(d.decisions()[0].status, OrderStatus::Completed);
    assert_eq!(balance(&d, 2), Some(0));
}

#[test]
fn an_order_over_the_balance_is_declined_and_changes_nothing() {
    let mut d = TestDriver::new(PARTITIONS);
    create(&mut d, 3, 100, 20);
    order(&mut d, 7, 3, 21);
    let decision = d.decisions()[0];
    assert_eq!(decision.status, OrderStatus::Declined);
    assert_eq!(decision.note, "Insufficient Balance!! Order Declined");
    assert_eq!(decision.balance_after, Some(20));
    assert_eq!(balance(&d, 3), Some(20));
    // Only the creation changed the user.
    assert_eq!(d.user_changes().len(), 1);
}

#[test]
fn an_order_for_an_unknown_user_is_declined_with_a_note_saying_so() {
    let mut d = TestDriver::new(PARTITIONS);
    order(&mut d, 9, 404, 5);
    let decision = d.decisions()[0];
    assert_eq!(decision.status, OrderStatus::Declined);
    assert_eq!(decision.note, NOTE_UNKNOWN_USER);
    assert_eq!(decision.balance_after, None);
}

#[test]
fn the_same_order_id_twice_is_decided_and_deducted_once() {
    let mut d = TestDriver::new(PARTITIONS);
    create(&mut d, 4, 100, 100);
    order(&mut d, 11, 4, 40);
    order(&mut d, 11, 4, 40);
    assert_eq!(d.decisions().len(), 1);
    assert_eq!(balance(&d, 4), Some(60));
}

#[test]
fn every_user_change_carries_the_full_row_and_a_growing_version() {
    let mut d = TestDriver::new(PARTITIONS);
    create(&mut d, 5, 100, 100);
    order(&mut d, 1, 5, 10);
    d.pipe_command(&UserCommand::Update {
        command_id: 2,
        target: Target::Uid(5),
        set: vec![Predicate {
            column: Column::Name,
            value: Value::Text("Asha".into()),
        }],
    })
    .unwrap();
    d.pipe_command(&UserCommand::Delete {
        command_id: 3,
        target: Target::Uid(5),
    })
    .unwrap();
    let changes = d.user_changes();
    let versions: Vec<u64> = changes
        .iter()
        .map(|c| match c {
            UserChange::Upserted { version, .. } | UserChange::Deleted { version, .. } => *version,
            UserChange::Rejected { .. } | UserChange::Outcome(_) => 0,
        })
        .collect();
    assert_eq!(versions, vec![1, 2, 3, 4]);
    match changes[1] {
        UserChange::Upserted { user, cause, .. } => {
            assert_eq!(user.credit_balance, 90);
            assert_eq!(*cause, ChangeCause::Order { order_id: 1 });
        }
        other => panic!("expected an upsert, got {other:?}"),
    }
    match changes[2] {
        UserChange::Upserted { user, .. } => assert_eq!((user.name.as_str(), user.credit_balance), ("Asha", 90)),
        other => panic!("expected an upsert, got {other:?}"),
    }
}

#[test]
fn a_user_created_again_after_a_delete_continues_the_version_sequence() {
    let mut d = TestDriver::new(PARTITIONS);
    create(&mut d, 6, 10, 10);
    d.pipe_command(&UserCommand::Delete {
        command_id: 1,
        target: Target::Uid(6),
    })
    .unwrap();
    create(&mut d, 6, 20, 5);
    match d.user_changes().last() {
        Some(UserChange::Upserted { version, user, .. }) => {
            assert_eq!(*version, 3);
            assert_eq!(user.credit_limit, 20);
        }
        other => panic!("expected an upsert, got {other:?}"),
    }
}

#[test]
fn invalid_commands_are_rejected_with_a_reason_and_change_nothing() {
    let mut d = TestDriver::new(PARTITIONS);
    create(&mut d, 7, 100, 50);
    create(&mut d, 7, 100, 50); // exists
    d.pipe_command(&UserCommand::Create {
        command_id: 1,
        user: UserRow {
            name: "A-name-longer-than-15".into(),
            ..user(8, 10, 10)
        },
    })
    .unwrap();
    d.pipe_command(&UserCommand::Create {
        command_id: 2,
        user: user(9, 10, 11),
    })
    .unwrap();
    d.pipe_command(&UserCommand::Update {
        command_id: 3,
        target: Target::Uid(7),
        set: vec![Predicate {
            column: Column::CreditBalance,
            value: Value::Int(101),
        }],
    })
    .unwrap();
    d.pipe_command(&UserCommand::Update {
        command_id: 4,
        target: Target::Uid(7),
        set: vec![Predicate {
            column: Column::CreditLimit,
            value: Value::Int(-1),
        }],
    })
    .unwrap();
    d.pipe_command(&UserCommand::Delete {
        command_id: 5,
        target: Target::Uid(12345),
    })
    .unwrap();
    let reasons = rejections(&d);
    assert_eq!(reasons.len(), 6, "{reasons:?}");
    assert!(reasons[0].contains("already exists"));
    assert!(reasons[1].contains("at most 15"));
    assert!(reasons[2].contains("credit_balance"));
    assert!(reasons[3].contains("credit_balance"));
    assert!(reasons[4].contains("credit_limit") || reasons[4].contains("credit_balance"));
    assert!(reasons[5].contains("does not exist"));
    assert_eq!(balance(&d, 7), Some(50));
    assert!(d.user_state(8).is_none());
    assert!(d.user_state(9).is_none());
}

#[test]
fn condition_commands_reach_every_partition_and_touch_only_matching_users() {
    let mut d = TestDriver::new(PARTITIONS);
    let uids: Vec<Uid> = (100..130).collect();
    let partitions: std::collections::HashSet<u32> =
        uids.iter().map(|u| partition_for(&uid_key(*u), PARTITIONS)).collect();
    assert!(partitions.len() > 1, "the users must spread over several partitions");
    for &uid in &uids {
        create(&mut d, uid, 100, if uid % 2 == 0 { 100 } else { 50 });
    }
    d.pipe_command(&UserCommand::Update {
        command_id: 1,
        target: Target::Condition(vec![Predicate {
            column: Column::CreditBalance,
            value: Value::Int(50),
        }]),
        set: vec![Predicate {
            column: Column::Lname,
            value: Value::Text("Half".into()),
        }],
    })
    .unwrap();
    for &uid in &uids {
        let state = d.user_state(uid).and_then(|s| s.user).unwrap();
        assert_eq!(state.lname == "Half", uid % 2 == 1, "uid {uid}");
    }
    d.pipe_command(&UserCommand::Delete {
        command_id: 2,
        target: Target::Condition(vec![Predicate {
            column: Column::Lname,
            value: Value::Text("Half".into()),
        }]),
    })
    .unwrap();
    for &uid in &uids {
        assert_eq!(
            d.user_state(uid).and_then(|s| s.user).is_some(),
            uid % 2 == 0,
            "uid {uid}"
        );
    }
    // A condition that matches nothing anywhere emits nothing (no rejection per partition).
    let before = d.user_changes().len();
    d.pipe_command(&UserCommand::Delete {
        command_id: 3,
        target: Target::Condition(vec![Predicate {
            column: Column::Name,
            value: Value::Text("Nobody".into()),
        }]),
    })
    .unwrap();
    assert_eq!(d.user_changes().len(), before);
}

#[test]
fn a_condition_command_over_many_users_is_applied_to_each_once_in_bounded_parts() {
    use creditstream::topology::user_commands::CONDITION_CHUNK;
    let mut d = TestDriver::new(1);
    let users = 2 * CONDITION_CHUNK as i64 + 500;
    for uid in 1..=users {
        create(&mut d, uid, 100, 100);
    }
    let changes_before = d.user_changes().len();
    let changelog_before = d.changelog(0).len();
    d.pipe_command(&UserCommand::Update {
        command_id: 7,
        target: Target::Condition(vec![Predicate {
            column: Column::CreditLimit,
            value: Value::Int(100),
        }]),
        set: vec![Predicate {
            column: Column::CreditBalance,
            value: Value::Int(40),
        }],
    })
    .unwrap();
    // Three parts: two full chunks handed in again after their commit, then the rest.
    assert_eq!(d.resumptions(), 2);
    assert_eq!(
        d.user_changes().len() - changes_before,
        users as usize,
        "one change per user"
    );
    for uid in 1..=users {
        let state = d.user_state(uid).unwrap();
        assert_eq!(
            (state.version, state.user.unwrap().credit_balance),
            (2, 40),
            "uid {uid}"
        );
    }
    // The cursor was saved after each full chunk and removed at the end.
    let changelog = &d.changelog(0)[changelog_before..];
    let cursor_writes: Vec<bool> = changelog
        .iter()
        .filter(|c| c.key.first() == Some(&b'c'))
        .map(|c| c.value.is_some())
        .collect();
    assert_eq!(cursor_writes, [true, true, false]);
    assert!(d.restored_store(0).scan_prefix(b"c").unwrap().is_empty());
    // One outcome per part; only the last says the partition is done, and together they
    // name every changed user once.
    let outcomes: Vec<_> = d.outcomes().into_iter().filter(|o| o.command_id == 7).collect();
    assert_eq!(
        outcomes.iter().map(|o| o.done).collect::<Vec<_>>(),
        [false, false, true]
    );
    let changed: std::collections::BTreeSet<_> = outcomes
        .iter()
        .flat_map(|o| o.changed.iter().map(|c| (c.uid, c.version)))
        .collect();
    assert_eq!(changed, (1..=users).map(|uid| (uid, 2)).collect());
}

#[test]
fn every_command_reports_its_outcome_the_users_it_changed_or_why_it_was_refused() {
    let mut d = TestDriver::new(PARTITIONS);
    create(&mut d, 1, 100, 100);
    let created = d.outcomes().last().cloned().cloned().unwrap();
    assert_eq!(
        created,
        CommandOutcome {
            command_id: 10,
            uid: Some(1),
            partitions: 1,
            changed: vec![ChangedUser {
                uid: 1,
                version: 1,
                deleted: false
            }],
            rejected: vec![],
            done: true,
        }
    );
    d.pipe_command(&UserCommand::Update {
        command_id: 11,
        target: Target::Uid(1),
        set: vec![Predicate {
            column: Column::CreditBalance,
            value: Value::Int(500),
        }],
    })
    .unwrap();
    let refused = d.outcomes().last().cloned().cloned().unwrap();
    assert_eq!((refused.command_id, refused.changed.len(), refused.done), (11, 0, true));
    assert_eq!(refused.rejected[0].uid, 1);
    assert!(
        refused.rejected[0].reason.contains("credit_balance"),
        "{:?}",
        refused.rejected
    );
    d.pipe_command(&UserCommand::Delete {
        command_id: 12,
        target: Target::Uid(2),
    })
    .unwrap();
    let unknown = d.outcomes().last().cloned().cloned().unwrap();
    assert_eq!(unknown.rejected[0].reason, "user 2 does not exist");
    // By condition: every partition reports once, even one with no matching user.
    d.pipe_command(&UserCommand::Delete {
        command_id: 13,
        target: Target::Condition(vec![Predicate {
            column: Column::Name,
            value: Value::Text("Arpana".into()),
        }]),
    })
    .unwrap();
    let reports: Vec<_> = d.outcomes().into_iter().filter(|o| o.command_id == 13).collect();
    assert_eq!(reports.len(), PARTITIONS as usize);
    assert!(reports
        .iter()
        .all(|o| o.done && o.partitions == PARTITIONS && o.uid.is_none()));
    let deleted: Vec<_> = reports.iter().flat_map(|o| o.changed.clone()).collect();
    assert_eq!(
        deleted,
        vec![ChangedUser {
            uid: 1,
            version: 2,
            deleted: true
        }]
    );
}

#[test]
fn records_of_a_partition_are_processed_in_timestamp_order_across_topics() {
    let mut d = TestDriver::new(PARTITIONS);
    let uid = 77;
    let p = partition_for(&uid_key(uid), PARTITIONS);
    let order = Order {
        order_id: 1,
        uid,
        amount: 10,
        timestamp_ms: 2_000,
    };
    let command = UserCommand::Create {
        command_id: 1,
        user: user(uid, 100, 100),
    };
    // The order arrives first but is younger: the create must go first.
    d.enqueue(InputTopic::Orders, p, Some(uid_key(uid)), Some(to_json(&order)), 2_000);
    d.enqueue(
        InputTopic::UserCommands,
        p,
        Some(uid_key(uid)),
        Some(to_json(&command)),
        1_000,
    );
    d.run().unwrap();
    assert_eq!(d.decisions()[0].status, OrderStatus::Completed);
}

#[test]
fn bad_records_become_dead_letters_and_processing_goes_on() {
    let mut d = TestDriver::new(PARTITIONS);
    let uid = 42;
    let p = partition_for(&uid_key(uid), PARTITIONS);
    let other_p = (p + 1) % PARTITIONS;
    let good = to_json(&Order {
        order_id: 5,
        uid,
        amount: 1,
        timestamp_ms: 1,
    });
    // (key, value, partition it is read from, the reason expected)
    type Case<'a> = (Option<&'a [u8]>, Option<Vec<u8>>, u32, DeadLetterReason);
    let cases: Vec<Case> = vec![
        (
            Some(b"42"),
            Some(vec![0xff, 0x00, 0x13]),
            p,
            DeadLetterReason::Undecodable,
        ),
        (Some(b"42"), None, p, DeadLetterReason::Undecodable),
        (
            Some(b"42"),
            Some(br#"{"hello":"world"}"#.to_vec()),
            p,
            DeadLetterReason::SchemaMismatch,
        ),
        (None, Some(good.clone()), p, DeadLetterReason::MissingKey),
        (Some(b""), Some(good.clone()), p, DeadLetterReason::MissingKey),
        (Some(b"forty-two"), Some(good.clone()), p, DeadLetterReason::InvalidKey),
        (
            Some(b"43"),
            Some(good.clone()),
            partition_for(b"43", PARTITIONS),
            DeadLetterReason::KeyMismatch,
        ),
        (
            Some(b"42"),
            Some(good.clone()),
            other_p,
            DeadLetterReason::WrongPartition,
        ),
        (
            Some(b"42"),
            Some(to_json(&Order {
                order_id: 6,
                uid,
                amount: 0,
                timestamp_ms: 1,
            })),
            p,
            DeadLetterReason::InvalidValue,
        ),
        (Some(b"*"), Some(good.clone()), p, DeadLetterReason::KeyMismatch),
    ];
    for (key, value, partition, _) in &cases {
        d.pipe_raw(InputTopic::Orders, *partition, *key, value.as_deref())
            .unwrap();
    }
    let letters = d.dead_letters();
    assert_eq!(letters.len(), cases.len());
    for (letter, (_, _, partition, reason)) in letters.iter().zip(&cases) {
        assert_eq!(letter.reason, *reason, "{}", letter.detail);
        assert_eq!(letter.meta.partition, *partition);
        assert_eq!(letter.source, InputTopic::Orders);
    }
    assert!(d.decisions().is_empty());
    // The partition is not stuck: a good record right after is decided.
    create(&mut d, uid, 10, 10);
    order(&mut d, 5, uid, 1);
    assert_eq!(d.decisions().len(), 1);
    assert_eq!(d.decisions()[0].status, OrderStatus::Completed);
}

#[test]
fn a_store_rebuilt_from_its_changelog_equals_the_store() {
    let mut d = TestDriver::new(PARTITIONS);
    for uid in 0..40 {
        create(&mut d, uid, 100, 100);
        order(&mut d, 1000 + uid, uid, uid);
    }
    d.pipe_command(&UserCommand::Delete {
        command_id: 1,
        target: Target::Condition(vec![Predicate {
            column: Column::CreditBalance,
            value: Value::Int(99),
        }]),
    })
    .unwrap();
    for p in 0..PARTITIONS {
        let restored = d.restored_store(p);
        let live = d.store(p).unwrap();
        assert_eq!(
            restored.scan_prefix(b"").unwrap(),
            live.scan_prefix(b"").unwrap(),
            "partition {p}"
        );
    }
}

#[test]
fn balances_equal_initial_minus_completed_amounts() {
    let mut d = TestDriver::new(PARTITIONS);
    for uid in 0..20 {
        create(&mut d, uid, 1000, 500);
    }
    let mut next = 0;
    for round in 0..30 {
        for uid in 0..20 {
            next += 1;
            order(&mut d, next, uid, (uid * 7 + round * 13) % 60 + 1);
        }
    }
    for uid in 0..20 {
        let completed: i64 = d
            .decisions()
            .iter()
            .filter(|x| x.uid == uid && x.status == OrderStatus::Completed)
            .map(|x| x.amount)
            .sum();
        let b = balance(&d, uid).unwrap();
        assert_eq!(b, 500 - completed);
        assert!(b >= 0);
    }
    assert_eq!(d.decisions().len(), 600);
}

#[test]
fn an_order_id_is_remembered_for_its_retention_then_forgotten_with_a_tombstone() {
    let mut driver = TestDriver::with_dedup_retention(PARTITIONS, 60_000);
    let t0 = 1_700_000_000_000;
    driver.set_now_ms(t0);
    create(&mut driver, 1, 100, 100);
    order(&mut driver, 5, 1, 30);
    // Within the retention: a repeat is ignored, and the sweep expires nothing.
    driver.set_now_ms(t0 + 59_000);
    order(&mut driver, 5, 1, 30);
    assert_eq!(driver.punctuate().unwrap(), 0);
    assert_eq!(driver.decisions().len(), 1);
    // After it: the entry is deleted, the changelog says so, and the id is a new order.
    driver.set_now_ms(t0 + 61_000);
    assert_eq!(driver.punctuate().unwrap(), 1);
    let partition = partition_for(&uid_key(1), PARTITIONS);
    let key = creditstream::topology::state::order_key(5);
    let last = driver
        .changelog(partition)
        .iter()
        .rev()
        .find(|c| c.key == key)
        .expect("the order's entry on the changelog");
    assert_eq!(last.value, None, "a tombstone");
    assert_eq!(driver.punctuate().unwrap(), 0, "expired once");
    order(&mut driver, 5, 1, 30);
    let balances: Vec<_> = driver.decisions().iter().map(|d| d.balance_after).collect();
    assert_eq!(balances, [Some(70), Some(40)]);
}

#[test]
fn a_repeated_order_id_is_ignored_before_during_and_after_the_sweep_builds_its_filter() {
    // Passes over a partition's order entries span several sweeps (at least 1000 entries a
    // sweep), and the filter of decided ids they build answers for that partition once a
    // pass completes; a repeat must be ignored at every point of that.
    let mut driver = TestDriver::with_dedup_retention(PARTITIONS, 60_000);
    driver.set_now_ms(1_700_000_000_000);
    create(&mut driver, 1, 1_000_000, 1_000_000);
    let ids: Vec<OrderId> = (1..=4_000).map(|i| i * 1_000_003 % 9_999_991 - 5_000_000).collect();
    for (n, chunk) in ids.chunks(250).enumerate() {
        for &id in chunk {
            order(&mut driver, id, 1, 1);
        }
        // Every id so far again, among new ones: none is decided twice.
        for &id in &ids[..(n + 1) * 250] {
            order(&mut driver, id, 1, 1);
        }
        assert_eq!(driver.punctuate().unwrap(), 0);
    }
    for &id in &ids {
        order(&mut driver, id, 1, 1);
    }
    assert_eq!(driver.decisions().len(), ids.len());
    assert_eq!(balance(&driver, 1), Some(1_000_000 - ids.len() as i64));
    // A new id is still decided.
    order(&mut driver, 7, 1, 1);
    assert_eq!(driver.decisions().len(), ids.len() + 1);
}
