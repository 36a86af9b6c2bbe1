//! What `GET /v1/commands/{id}` answers, from what the processor reported (as the sink
//! recorded it) and whether this replica accepted the command. Pure, so every state of a
//! command is tested without a database. A command is `applied` or `rejected` only once
//! every partition it went to has finished it.

use super::ports::{CommandRecord, CommandUser};
use serde::Serialize;

/// Where a command stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandState {
    /// On Kafka, not yet finished by every partition it went to.
    Accepted,
    /// Finished: it changed the users listed (possibly none), and refused the others.
    Applied,
    /// Finished, and it changed nobody because every user it targeted was refused.
    Rejected,
}

/// The body of `GET /v1/commands/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommandView {
    pub command_id: i64,
    pub status: CommandState,
    /// The first refusal's reason, when the command was rejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The users it changed, with their new versions.
    pub changed: Vec<CommandUser>,
    /// The users it refused, with the processor's reasons.
    pub rejected: Vec<CommandUser>,
    /// More users were affected than listed.
    pub truncated: bool,
    pub partitions_done: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partitions: Option<u32>,
}

impl CommandView {
    pub fn is_finished(&self) -> bool {
        self.status != CommandState::Accepted
    }
}

/// The view of a command, or `None` when nothing is known of it here (neither accepted
/// by this replica nor reported by the processor yet).
pub fn view(command_id: i64, record: CommandRecord, accepted_here: bool) -> Option<CommandView> {
    let finished = record.partitions.is_some_and(|p| record.partitions_done >= p);
    if !finished && !accepted_here && record.partitions_done == 0 && record.users.is_empty() {
        return None;
    }
    let (rejected, changed): (Vec<_>, Vec<_>) = record.users.into_iter().partition(|u| u.reason.is_some());
    let status = match (finished, changed.is_empty() && !rejected.is_empty()) {
        (false, _) => CommandState::Accepted,
        (true, true) => CommandState::Rejected,
        (true, false) => CommandState::Applied,
    };
    Some(CommandView {
        command_id,
        status,
        reason: match status {
            CommandState::Rejected => rejected.first().and_then(|u| u.reason.clone()),
            _ => None,
        },
        changed,
        rejected,
        truncated: record.truncated,
        partitions_done: record.partitions_done,
        partitions: record.partitions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(uid: i64, reason: Option<&str>) -> CommandUser {
        CommandUser {
            uid,
            version: reason.is_none().then_some(2),
            deleted: false,
            reason: reason.map(str::to_string),
        }
    }

    fn record(done: u32, partitions: Option<u32>, users: Vec<CommandUser>) -> CommandRecord {
        CommandRecord {
            partitions_done: done,
            partitions,
            users,
            truncated: false,
        }
    }

    #[test]
    fn unknown_until_accepted_here_or_reported() {
        assert_eq!(view(1, record(0, None, vec![]), false), None);
        assert_eq!(
            view(1, record(0, None, vec![]), true).map(|v| v.status),
            Some(CommandState::Accepted)
        );
    }

    #[test]
    fn applied_or_rejected_only_when_every_partition_finished() {
        let partial = view(1, record(2, Some(6), vec![user(5, None)]), false).unwrap();
        assert_eq!(partial.status, CommandState::Accepted);
        let applied = view(1, record(6, Some(6), vec![user(5, None), user(6, Some("no"))]), false).unwrap();
        assert_eq!(
            (applied.status, applied.changed.len(), applied.rejected.len()),
            (CommandState::Applied, 1, 1)
        );
        let nobody = view(1, record(6, Some(6), vec![]), false).unwrap();
        assert_eq!(nobody.status, CommandState::Applied);
        let rejected = view(
            1,
            record(1, Some(1), vec![user(5, Some("user 5 does not exist"))]),
            true,
        )
        .unwrap();
        assert_eq!(rejected.status, CommandState::Rejected);
        assert_eq!(rejected.reason.as_deref(), Some("user 5 does not exist"));
    }
}
