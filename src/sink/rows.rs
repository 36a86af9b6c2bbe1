//! Turns a batch of sink records into the rows to write: two `Order_details` rows per
//! decision (the order's `Initialised` event, then its outcome), per uid only the newest
//! user change of the batch, and the users and partitions each command's outcome reports.
//! Pure (no SQL), so the batching rules are tested without a database.

use crate::sink::consumer::{SinkRecord, SinkTopic};
use crate::topology::record::{CommandOutcome, Decision, OrderStatus, UserChange, UserRow, NOTE_INITIALISED};
use std::collections::BTreeMap;

/// One row of `Order_details`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderEventRow {
    pub orderid: i64,
    pub uid: i64,
    pub status: OrderStatus,
    pub event_timestamp: String,
    pub amount: i64,
    pub notes: String,
}

/// The newest state of one user in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserWrite {
    Upsert { version: u64, user: UserRow },
    Delete { uid: i64, version: u64 },
}

impl UserWrite {
    fn version(&self) -> u64 {
        match self {
            UserWrite::Upsert { version, .. } | UserWrite::Delete { version, .. } => *version,
        }
    }
}

/// One row of `Command_user`: a user a command changed (with its new version) or refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandUserRow {
    pub command_id: i64,
    pub uid: i64,
    /// `None` when the command refused this user.
    pub version: Option<u64>,
    pub deleted: bool,
    /// Why the user was refused, at most [`MAX_REASON_CHARS`] characters.
    pub reason: Option<String>,
}

/// One row of `Command_outcome`: a partition finished a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandDoneRow {
    pub command_id: i64,
    pub partition: i32,
    /// How many partitions report on the command.
    pub partitions: u32,
}

/// The longest refusal reason kept (`Command_user.reason` is `VARCHAR(255)`).
pub const MAX_REASON_CHARS: usize = 255;

/// What a batch writes, and how many records could not be read.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchRows {
    pub order_events: Vec<OrderEventRow>,
    pub users: BTreeMap<i64, UserWrite>,
    pub command_users: Vec<CommandUserRow>,
    pub commands_done: Vec<CommandDoneRow>,
    pub undecodable: usize,
}

impl BatchRows {
    fn add_outcome(&mut self, partition: i32, outcome: CommandOutcome) {
        let command_id = outcome.command_id;
        self.command_users
            .extend(outcome.changed.into_iter().map(|changed| CommandUserRow {
                command_id,
                uid: changed.uid,
                version: Some(changed.version),
                deleted: changed.deleted,
                reason: None,
            }));
        self.command_users
            .extend(outcome.rejected.into_iter().map(|rejected| CommandUserRow {
                command_id,
                uid: rejected.uid,
                version: None,
                deleted: false,
                reason: Some(rejected.reason.chars().take(MAX_REASON_CHARS).collect()),
            }));
        if outcome.done {
            self.commands_done.push(CommandDoneRow {
                command_id,
                partition,
                partitions: outcome.partitions,
            });
        }
    }
}

/// `YYYY-MM-DD HH:MM:SS.mmm` (UTC) for ms since the Unix epoch.
pub fn format_timestamp(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{millis:03}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Sorts a batch into rows.
pub fn rows_of(batch: &[SinkRecord]) -> BatchRows {
    let mut rows = BatchRows::default();
    for record in batch {
        let Some(value) = record.value.as_deref() else {
            rows.undecodable += 1;
            continue;
        };
        match record.topic {
            SinkTopic::Decisions => match serde_json::from_slice::<Decision>(value) {
                Ok(d) => {
                    // Only an order the processor accepted has a decision, so only such an
                    // order gets its Initialised row, written just before its outcome.
                    rows.order_events.push(OrderEventRow {
                        orderid: d.order_id,
                        uid: d.uid,
                        status: OrderStatus::Initialised,
                        event_timestamp: format_timestamp(d.order_timestamp_ms),
                        amount: d.amount,
                        notes: NOTE_INITIALISED.to_string(),
                    });
                    rows.order_events.push(OrderEventRow {
                        orderid: d.order_id,
                        uid: d.uid,
                        status: d.status,
                        event_timestamp: format_timestamp(d.decided_at_ms),
                        amount: d.amount,
                        notes: d.note,
                    });
                }
                Err(_) => rows.undecodable += 1,
            },
            SinkTopic::UserChanges => {
                let write = match serde_json::from_slice::<UserChange>(value) {
                    Ok(UserChange::Upserted { version, user, .. }) => UserWrite::Upsert { version, user },
                    Ok(UserChange::Deleted { uid, version, .. }) => UserWrite::Delete { uid, version },
                    Ok(UserChange::Rejected { .. }) => continue,
                    Ok(UserChange::Outcome(outcome)) => {
                        rows.add_outcome(record.partition, outcome);
                        continue;
                    }
                    Err(_) => {
                        rows.undecodable += 1;
                        continue;
                    }
                };
                let uid = match &write {
                    UserWrite::Upsert { user, .. } => user.uid,
                    UserWrite::Delete { uid, .. } => *uid,
                };
                match rows.users.get(&uid) {
                    Some(existing) if existing.version() >= write.version() => {}
                    _ => {
                        rows.users.insert(uid, write);
                    }
                }
            }
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::codec::to_json;
    use crate::topology::record::ChangeCause;

    fn user(uid: i64, balance: i64) -> UserRow {
        UserRow {
            uid,
            name: "A".into(),
            lname: "B".into(),
            credit_limit: 100,
            credit_balance: balance,
        }
    }

    fn change(change: &UserChange, offset: i64) -> SinkRecord {
        SinkRecord {
            topic: SinkTopic::UserChanges,
            partition: 0,
            offset,
            value: Some(to_json(change)),
        }
    }

    #[test]
    fn formats_timestamps_in_utc() {
        assert_eq!(format_timestamp(0), "1970-01-01 00:00:00.000");
        assert_eq!(format_timestamp(1_700_000_000_123), "2023-11-14 22:13:20.123");
        assert_eq!(format_timestamp(951_782_400_000), "2000-02-29 00:00:00.000");
    }

    #[test]
    fn keeps_only_the_newest_change_per_uid() {
        let batch = vec![
            change(
                &UserChange::Upserted {
                    version: 2,
                    cause: ChangeCause::Updated,
                    user: user(1, 50),
                },
                0,
            ),
            change(
                &UserChange::Upserted {
                    version: 1,
                    cause: ChangeCause::Created,
                    user: user(1, 100),
                },
                1,
            ),
            change(
                &UserChange::Deleted {
                    uid: 1,
                    version: 3,
                    command_id: 9,
                },
                2,
            ),
            change(
                &UserChange::Upserted {
                    version: 1,
                    cause: ChangeCause::Created,
                    user: user(2, 10),
                },
                3,
            ),
            change(
                &UserChange::Rejected {
                    uid: Some(3),
                    command_id: 1,
                    reason: "x".into(),
                },
                4,
            ),
        ];
        let rows = rows_of(&batch);
        assert_eq!(rows.users.len(), 2);
        assert_eq!(rows.users[&1], UserWrite::Delete { uid: 1, version: 3 });
        assert_eq!(
            rows.users[&2],
            UserWrite::Upsert {
                version: 1,
                user: user(2, 10)
            }
        );
    }

    #[test]
    fn a_command_outcome_gives_its_users_and_marks_the_partition_done_only_at_the_end() {
        use crate::topology::record::{ChangedUser, RejectedUser};
        let report = |done: bool, uid: i64| CommandOutcome {
            command_id: 7,
            uid: None,
            partitions: 6,
            changed: vec![ChangedUser {
                uid,
                version: 2,
                deleted: false,
            }],
            rejected: vec![RejectedUser {
                uid: uid + 1,
                reason: "r".repeat(300),
            }],
            done,
        };
        let batch = vec![
            change(&UserChange::Outcome(report(false, 1)), 0),
            change(&UserChange::Outcome(report(true, 10)), 1),
        ];
        let rows = rows_of(&batch);
        assert_eq!(
            rows.commands_done,
            vec![CommandDoneRow {
                command_id: 7,
                partition: 0,
                partitions: 6
            }]
        );
        let uids: Vec<_> = rows.command_users.iter().map(|r| (r.uid, r.version)).collect();
        assert_eq!(uids, vec![(1, Some(2)), (2, None), (10, Some(2)), (11, None)]);
        assert_eq!(
            rows.command_users[1].reason.as_ref().map(|r| r.chars().count()),
            Some(MAX_REASON_CHARS)
        );
        assert!(rows.users.is_empty());
    }

    #[test]
    fn counts_undecodable_records_instead_of_failing() {
        let batch = vec![
            SinkRecord {
                topic: SinkTopic::Decisions,
                partition: 0,
                offset: 0,
                value: Some(b"garbage".to_vec()),
            },
            SinkRecord {
                topic: SinkTopic::Decisions,
                partition: 0,
                offset: 1,
                value: None,
            },
        ];
        let rows = rows_of(&batch);
        assert_eq!(rows.undecodable, 2);
        assert!(rows.order_events.is_empty());
    }
}
