//! User commands (create, update, delete by uid or by condition) applied to the per-uid
//! credit state of one partition, for the credit-check processor. Invariant: a stored user
//! always passes [`validate_user`]; a command that would break it is rejected for that
//! user, reported in the command's outcome, and changes nothing.

use super::credit_check::{corrupt, load_user, save_user, CreditOutput};
use super::processor::{Context, ProcessError, Progress};
use super::record::{
    ChangeCause, ChangedUser, Column, CommandOutcome, Predicate, RejectedUser, Target, Uid, UserChange, UserCommand,
    UserRow, Value, MAX_NAME_CHARS,
};
use super::state::{self, ConditionCursor, UserState, USER_PREFIX};

/// Checks the invariants every stored user keeps; the error says which one broke.
pub fn validate_user(user: &UserRow) -> Result<(), String> {
    for (column, text) in [("name", &user.name), ("lname", &user.lname)] {
        let chars = text.chars().count();
        if chars == 0 {
            return Err(format!("{column} must not be empty"));
        }
        if chars > MAX_NAME_CHARS {
            return Err(format!(
                "{column} is {chars} characters long, at most {MAX_NAME_CHARS} allowed"
            ));
        }
    }
    if user.credit_limit < 0 {
        return Err(format!("credit_limit {} is negative", user.credit_limit));
    }
    if user.credit_balance < 0 || user.credit_balance > user.credit_limit {
        return Err(format!(
            "credit_balance {} must lie between 0 and credit_limit {}",
            user.credit_balance, user.credit_limit
        ));
    }
    Ok(())
}

/// Applies `set` to a copy of `user`; an error names the column that cannot take the value.
pub fn apply_assignments(user: &UserRow, set: &[Predicate]) -> Result<UserRow, String> {
    let mut next = user.clone();
    for assignment in set {
        match (assignment.column, &assignment.value) {
            (Column::Uid, _) => return Err("uid cannot be changed".to_string()),
            (Column::Name, Value::Text(t)) => next.name = t.clone(),
            (Column::Lname, Value::Text(t)) => next.lname = t.clone(),
            (Column::CreditLimit, Value::Int(v)) => next.credit_limit = *v,
            (Column::CreditBalance, Value::Int(v)) => next.credit_balance = *v,
            (column, _) => {
                return Err(format!(
                    "{} needs a {} value",
                    column.as_str(),
                    if column.is_text() { "text" } else { "integer" }
                ))
            }
        }
    }
    validate_user(&next)?;
    Ok(next)
}

/// Refuses a command for one user: a `Rejected` change now, and an entry
/// in the command's outcome.
fn reject(ctx: &mut dyn Context<CreditOutput>, outcome: &mut CommandOutcome, uid: Uid, reason: String) {
    ctx.forward(CreditOutput::UserChange(UserChange::Rejected {
        uid: Some(uid),
        command_id: outcome.command_id,
        reason: reason.clone(),
    }));
    outcome.rejected.push(RejectedUser { uid, reason });
}

/// Saves a user's new state, emits the change and notes it in the command's outcome.
fn change_user(
    ctx: &mut dyn Context<CreditOutput>,
    outcome: &mut CommandOutcome,
    version: u64,
    uid: Uid,
    next: Option<(UserRow, ChangeCause)>,
) -> Result<(), ProcessError> {
    let user = next.as_ref().map(|(user, _)| user.clone());
    save_user(ctx, uid, &UserState { version, user })?;
    outcome.changed.push(ChangedUser {
        uid,
        version,
        deleted: next.is_none(),
    });
    ctx.forward(CreditOutput::UserChange(match next {
        Some((user, cause)) => UserChange::Upserted { version, cause, user },
        None => UserChange::Deleted {
            uid,
            version,
            command_id: outcome.command_id,
        },
    }));
    Ok(())
}

/// Users a condition command handles per transaction: a command that matches a million
/// users on one partition is applied in chunks, each committed with a cursor saying how
/// far it got, so no transaction grows with the partition.
pub const CONDITION_CHUNK: usize = 1_000;

/// The live users a command targets on this partition: by uid at once; by condition the
/// next chunk of users after the command's cursor, with [`Progress::Partial`] while more
/// may follow. The cursor is saved (or removed at the end) in the same transaction as
/// the chunk's changes, so a crash resumes where the last commit left off.
fn targets(
    ctx: &mut dyn Context<CreditOutput>,
    command_id: i64,
    target: &Target,
) -> Result<(Vec<(u64, UserRow)>, Progress), ProcessError> {
    let condition = match target {
        Target::Uid(uid) => {
            let found = match load_user(ctx, *uid)? {
                Some(UserState {
                    version,
                    user: Some(user),
                }) => vec![(version, user)],
                _ => Vec::new(),
            };
            return Ok((found, Progress::Done));
        }
        Target::Condition(condition) => condition,
    };
    let cursor_key = state::cursor_key(command_id);
    let after = match ctx.store().get(&cursor_key)? {
        Some(bytes) => Some(
            state::decode::<ConditionCursor>(&bytes)
                .map_err(corrupt(cursor_key.clone()))?
                .after,
        ),
        None => None,
    };
    let page = ctx.store().scan(USER_PREFIX, after.as_deref(), CONDITION_CHUNK)?;
    let progress = match page.last() {
        Some((last, _)) if page.len() >= CONDITION_CHUNK => {
            let cursor = ConditionCursor { after: last.clone() };
            ctx.store().put(&cursor_key, state::encode(&cursor))?;
            Progress::Partial
        }
        _ => {
            if after.is_some() {
                ctx.store().delete(&cursor_key)?;
            }
            Progress::Done
        }
    };
    let mut found = Vec::new();
    for (key, bytes) in page {
        let state: UserState = state::decode(&bytes).map_err(corrupt(key))?;
        if let Some(user) = state.user {
            if user.matches(condition) {
                found.push((state.version, user));
            }
        }
    }
    Ok((found, progress))
}

/// Applies a command and reports what it did in a [`CommandOutcome`], marked `done` with
/// the transaction that finishes the command on this partition.
pub(super) fn apply_command(
    ctx: &mut dyn Context<CreditOutput>,
    command: UserCommand,
) -> Result<Progress, ProcessError> {
    let mut outcome = CommandOutcome {
        command_id: command.command_id(),
        uid: command.routing_uid(),
        partitions: if command.routing_uid().is_some() {
            1
        } else {
            ctx.partition_count()
        },
        changed: Vec::new(),
        rejected: Vec::new(),
        done: false,
    };
    let progress = apply(ctx, &mut outcome, command)?;
    outcome.done = progress == Progress::Done;
    ctx.forward(CreditOutput::UserChange(UserChange::Outcome(outcome)));
    Ok(progress)
}

fn apply(
    ctx: &mut dyn Context<CreditOutput>,
    outcome: &mut CommandOutcome,
    command: UserCommand,
) -> Result<Progress, ProcessError> {
    match command {
        UserCommand::Create { user, .. } => {
            if let Err(reason) = validate_user(&user) {
                reject(ctx, outcome, user.uid, reason);
                return Ok(Progress::Done);
            }
            let previous = load_user(ctx, user.uid)?;
            if matches!(previous, Some(UserState { user: Some(_), .. })) {
                let reason = format!("user {} already exists", user.uid);
                reject(ctx, outcome, user.uid, reason);
                return Ok(Progress::Done);
            }
            let version = previous.map_or(0, |p| p.version) + 1;
            change_user(ctx, outcome, version, user.uid, Some((user, ChangeCause::Created)))?;
            Ok(Progress::Done)
        }
        UserCommand::Update {
            command_id,
            target,
            set,
        } => {
            let (found, progress) = targets(ctx, command_id, &target)?;
            if let (Target::Uid(uid), true) = (&target, found.is_empty()) {
                reject(ctx, outcome, *uid, format!("user {uid} does not exist"));
            }
            for (version, user) in found {
                match apply_assignments(&user, &set) {
                    Ok(next) => change_user(ctx, outcome, version + 1, user.uid, Some((next, ChangeCause::Updated)))?,
                    Err(reason) => reject(ctx, outcome, user.uid, reason),
                }
            }
            Ok(progress)
        }
        UserCommand::Delete { command_id, target } => {
            let (found, progress) = targets(ctx, command_id, &target)?;
            if let (Target::Uid(uid), true) = (&target, found.is_empty()) {
                reject(ctx, outcome, *uid, format!("user {uid} does not exist"));
            }
            for (version, user) in found {
                change_user(ctx, outcome, version + 1, user.uid, None)?;
            }
            Ok(progress)
        }
    }
}
