//! The invariants creditstream promises, checked over what the topics and the tables hold.
//! Pure: the collector reads the data, this decides. Every violation names the order or
//! user it concerns.

use crate::topology::record::{ChangeCause, Decision, Order, OrderId, OrderStatus, Uid, UserChange, UserRow};
use crate::topology::state::UserState;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Everything the checker looks at.
#[derive(Debug, Default, Clone)]
pub struct Observed {
    /// Order ids the ingest acknowledged (202), when the load generator recorded them.
    pub acknowledged: Option<Vec<OrderId>>,
    /// The orders topic's records the processor can decide.
    pub orders: Vec<Order>,
    /// `(partition, offset)` of the orders topic's records it must reject.
    pub rejected_orders: Vec<(i32, i64)>,
    /// `(partition, offset)` each dead letter of the orders topic names as its source.
    pub order_dead_letters: Vec<(i32, i64)>,
    pub decisions: Vec<Decision>,
    /// In offset order per partition (versions of one uid are on one partition).
    pub user_changes: Vec<UserChange>,
    /// The processor's state, as its changelog says (latest value per uid).
    pub state: BTreeMap<Uid, UserState>,
    pub db_users: Vec<UserRow>,
    /// `(orderid, order_status)` of every `Order_details` row.
    pub db_order_events: Vec<(OrderId, String)>,
}

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub invariant: &'static str,
    pub detail: String,
}

fn violation(invariant: &'static str, detail: String) -> Violation {
    Violation { invariant, detail }
}

/// Orders that were decided although the ingest answered 503 for them: the broker had the
/// record but did not acknowledge it in time. A 503 means "not acknowledged; retry with the
/// same idempotency key", which then gets the same order id, so such an order is never
/// decided twice. Counted, not a violation.
pub fn decided_without_acknowledgement(observed: &Observed) -> usize {
    match &observed.acknowledged {
        None => 0,
        Some(acked) => {
            let acked: BTreeSet<OrderId> = acked.iter().copied().collect();
            let decided: BTreeSet<OrderId> = observed.decisions.iter().map(|d| d.order_id).collect();
            decided.difference(&acked).count()
        }
    }
}

/// Checks every invariant; an empty result means none is broken.
pub fn check(observed: &Observed) -> Vec<Violation> {
    let mut found = Vec::new();
    check_decisions(observed, &mut found);
    check_balances(observed, &mut found);
    check_final_state(observed, &mut found);
    check_order_details(observed, &mut found);
    check_dead_letters(observed, &mut found);
    found
}

/// Every rejected order record is dead-lettered exactly once, and nothing else is.
fn check_dead_letters(o: &Observed, found: &mut Vec<Violation>) {
    let mut letters: HashMap<(i32, i64), usize> = HashMap::new();
    for coordinates in &o.order_dead_letters {
        *letters.entry(*coordinates).or_default() += 1;
    }
    for coordinates in &o.rejected_orders {
        match letters.remove(coordinates) {
            Some(1) => {}
            n => found.push(violation(
                "every rejected order record dead-lettered once",
                format!("orders {coordinates:?}: {} dead letters", n.unwrap_or(0)),
            )),
        }
    }
    for (coordinates, _) in letters {
        found.push(violation(
            "no dead letter for an order record that can be decided",
            format!("orders {coordinates:?}"),
        ));
    }
}

fn check_decisions(o: &Observed, found: &mut Vec<Violation>) {
    let ordered: BTreeSet<OrderId> = o.orders.iter().map(|x| x.order_id).collect();
    if let Some(acked) = &o.acknowledged {
        for id in acked.iter().filter(|id| !ordered.contains(id)) {
            found.push(violation(
                "acknowledged order is on the orders topic",
                format!("order {id}"),
            ));
        }
    }
    let mut decided: HashMap<OrderId, usize> = HashMap::new();
    for d in &o.decisions {
        *decided.entry(d.order_id).or_default() += 1;
    }
    for (id, n) in &decided {
        if *n > 1 {
            found.push(violation(
                "one decision per order",
                format!("order {id} decided {n} times"),
            ));
        }
        if !ordered.contains(id) {
            found.push(violation("no decision without an order", format!("order {id}")));
        }
    }
    for id in ordered.iter().filter(|id| !decided.contains_key(id)) {
        found.push(violation("every order decided", format!("order {id} has no decision")));
    }
}

fn check_balances(o: &Observed, found: &mut Vec<Violation>) {
    let completed: HashMap<OrderId, &Decision> = o
        .decisions
        .iter()
        .filter(|d| d.status == OrderStatus::Completed)
        .map(|d| (d.order_id, d))
        .collect();
    let mut seen_versions: BTreeSet<(Uid, u64)> = BTreeSet::new();
    let mut previous: HashMap<Uid, i64> = HashMap::new();
    let mut charged: BTreeSet<OrderId> = BTreeSet::new();
    for change in &o.user_changes {
        match change {
            UserChange::Upserted { version, cause, user } => {
                if !seen_versions.insert((user.uid, *version)) {
                    found.push(violation(
                        "no duplicate output",
                        format!("uid {} version {version} emitted twice", user.uid),
                    ));
                    continue;
                }
                if user.credit_balance < 0 {
                    found.push(violation(
                        "no negative balance",
                        format!("uid {} balance {}", user.uid, user.credit_balance),
                    ));
                }
                if let ChangeCause::Order { order_id } = cause {
                    charged.insert(*order_id);
                    match (completed.get(order_id), previous.get(&user.uid)) {
                        (Some(d), Some(before)) if before - d.amount != user.credit_balance => found.push(violation(
                            "balance = previous balance - completed amount",
                            format!(
                                "uid {} order {order_id}: {before} - {} != {}",
                                user.uid, d.amount, user.credit_balance
                            ),
                        )),
                        (None, _) => found.push(violation(
                            "balance changes only by completed orders",
                            format!("uid {} order {order_id}", user.uid),
                        )),
                        _ => {}
                    }
                }
                previous.insert(user.uid, user.credit_balance);
            }
            UserChange::Deleted { uid, version, .. } => {
                if !seen_versions.insert((*uid, *version)) {
                    found.push(violation(
                        "no duplicate output",
                        format!("uid {uid} version {version} emitted twice"),
                    ));
                }
                previous.remove(uid);
            }
            UserChange::Rejected { .. } | UserChange::Outcome(_) => {}
        }
    }
    for id in completed.keys().filter(|id| !charged.contains(id)) {
        found.push(violation(
            "every completed order is charged once",
            format!("order {id} has no balance change"),
        ));
    }
}

fn check_final_state(o: &Observed, found: &mut Vec<Violation>) {
    let mut latest: BTreeMap<Uid, (u64, Option<UserRow>)> = BTreeMap::new();
    for change in &o.user_changes {
        let (uid, version, row) = match change {
            UserChange::Upserted { version, user, .. } => (user.uid, *version, Some(user.clone())),
            UserChange::Deleted { uid, version, .. } => (*uid, *version, None),
            UserChange::Rejected { .. } | UserChange::Outcome(_) => continue,
        };
        if latest.get(&uid).is_none_or(|(v, _)| version > *v) {
            latest.insert(uid, (version, row));
        }
    }
    let db: BTreeMap<Uid, &UserRow> = o.db_users.iter().map(|u| (u.uid, u)).collect();
    for (uid, (version, row)) in &latest {
        let state = o.state.get(uid);
        if state.map(|s| (s.version, s.user.as_ref())) != Some((*version, row.as_ref())) {
            found.push(violation(
                "processor state = user-changes topic",
                format!("uid {uid}: state {state:?}, topic v{version} {row:?}"),
            ));
        }
        if db.get(uid).copied() != row.as_ref() {
            found.push(violation(
                "MySQL User = user-changes topic",
                format!("uid {uid}: db {:?}, topic {row:?}", db.get(uid)),
            ));
        }
    }
    for uid in db.keys().filter(|uid| !latest.contains_key(uid)) {
        found.push(violation("no MySQL user without a change", format!("uid {uid}")));
    }
}

fn check_order_details(o: &Observed, found: &mut Vec<Violation>) {
    let mut rows: HashMap<OrderId, Vec<&str>> = HashMap::new();
    for (id, status) in &o.db_order_events {
        rows.entry(*id).or_default().push(status.as_str());
    }
    let decisions: HashMap<OrderId, &Decision> = o.decisions.iter().map(|d| (d.order_id, d)).collect();
    let ordered: BTreeSet<OrderId> = o.orders.iter().map(|x| x.order_id).collect();
    for id in &ordered {
        let statuses = rows.remove(id).unwrap_or_default();
        let Some(d) = decisions.get(id) else {
            // Not decided yet, or rejected by the processor (dead-lettered): no row at all.
            if !statuses.is_empty() {
                found.push(violation(
                    "no Order_details row for an order without a decision",
                    format!("order {id}: {statuses:?}"),
                ));
            }
            continue;
        };
        let initialised = statuses.iter().filter(|s| **s == "Initialised").count();
        if initialised != 1 {
            found.push(violation(
                "one Initialised row per order",
                format!("order {id}: {initialised}"),
            ));
        }
        let finals: Vec<&&str> = statuses.iter().filter(|s| **s != "Initialised").collect();
        if finals.len() != 1 || *finals[0] != d.status.as_str() {
            found.push(violation(
                "one final row per decided order",
                format!("order {id}: {finals:?}, decided {}", d.status.as_str()),
            ));
        }
    }
    for (id, statuses) in rows {
        found.push(violation(
            "no Order_details row without an order",
            format!("order {id}: {statuses:?}"),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::driver::TestDriver;
    use crate::topology::record::UserCommand;

    fn observed() -> Observed {
        let mut d = TestDriver::new(3);
        let mut orders = Vec::new();
        for uid in 1..=5 {
            d.pipe_command(&UserCommand::Create {
                command_id: uid,
                user: UserRow {
                    uid,
                    name: "A".into(),
                    lname: "B".into(),
                    credit_limit: 100,
                    credit_balance: 50,
                },
            })
            .unwrap();
        }
        for i in 1..=40 {
            let order = Order {
                order_id: i,
                uid: i % 5 + 1,
                amount: i % 13 + 1,
                timestamp_ms: i,
            };
            d.pipe_order(&order).unwrap();
            orders.push(order);
        }
        let decisions: Vec<Decision> = d.decisions().into_iter().cloned().collect();
        let user_changes: Vec<UserChange> = d.user_changes().into_iter().cloned().collect();
        let state = (1..=5).filter_map(|uid| d.user_state(uid).map(|s| (uid, s))).collect();
        let db_users = (1..=5)
            .filter_map(|uid| d.user_state(uid).and_then(|s| s.user))
            .collect();
        let mut db_order_events: Vec<(OrderId, String)> =
            orders.iter().map(|o| (o.order_id, "Initialised".to_string())).collect();
        db_order_events.extend(decisions.iter().map(|x| (x.order_id, x.status.as_str().to_string())));
        Observed {
            acknowledged: Some(orders.iter().map(|o| o.order_id).collect()),
            orders,
            rejected_orders: Vec::new(),
            order_dead_letters: Vec::new(),
            decisions,
            user_changes,
            state,
            db_users,
            db_order_events,
        }
    }

    #[test]
    fn a_consistent_run_has_no_violation() {
        assert_eq!(check(&observed()), Vec::new());
        assert_eq!(decided_without_acknowledgement(&observed()), 0);
    }

    #[test]
    fn an_order_answered_503_but_written_is_counted_not_a_violation() {
        let mut o = observed();
        o.acknowledged.as_mut().unwrap().retain(|id| *id != 5);
        assert_eq!(decided_without_acknowledgement(&o), 1);
        assert_eq!(check(&o), Vec::new());
    }

    #[test]
    fn each_kind_of_corruption_is_found() {
        let mut o = observed();
        o.decisions.push(o.decisions[0].clone());
        assert!(check(&o).iter().any(|v| v.invariant == "one decision per order"));

        let mut o = observed();
        o.decisions.remove(3);
        assert!(check(&o).iter().any(|v| v.invariant == "every order decided"));

        let mut o = observed();
        o.acknowledged.as_mut().unwrap().push(9999);
        assert!(check(&o)
            .iter()
            .any(|v| v.invariant == "acknowledged order is on the orders topic"));

        let mut o = observed();
        o.db_users[0].credit_balance += 1;
        assert!(check(&o)
            .iter()
            .any(|v| v.invariant == "MySQL User = user-changes topic"));

        let mut o = observed();
        o.db_order_events.push((1, "Initialised".into()));
        assert!(check(&o).iter().any(|v| v.invariant == "one Initialised row per order"));

        let mut o = observed();
        o.rejected_orders.push((0, 99));
        assert!(check(&o)
            .iter()
            .any(|v| v.invariant == "every rejected order record dead-lettered once"));
        o.order_dead_letters.push((0, 99));
        assert_eq!(check(&o), Vec::new());
        o.order_dead_letters.push((0, 99));
        assert!(check(&o)
            .iter()
            .any(|v| v.invariant == "every rejected order record dead-lettered once"));

        let mut o = observed();
        o.decisions.retain(|d| d.order_id != 2);
        assert!(check(&o)
            .iter()
            .any(|v| v.invariant == "no Order_details row for an order without a decision"));

        let mut o = observed();
        let dup = o.user_changes[7].clone();
        o.user_changes.push(dup);
        assert!(check(&o).iter().any(|v| v.invariant == "no duplicate output"));

        let mut o = observed();
        if let Some(UserState { user: Some(user), .. }) = o.state.get_mut(&1) {
            user.credit_balance = 7;
        }
        assert!(check(&o)
            .iter()
            .any(|v| v.invariant == "processor state = user-changes topic"));
    }
}
