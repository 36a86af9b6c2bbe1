//! The README's examples work as pasted: every `curl` line of its quick start (the REST
//! calls and the seed's calls) runs, through the real curl and a shell, against
//! `creditstream all` on the real broker and database, with the ids from earlier answers
//! filled in for `<uid>`, `<order_id>` and `<command_id>`. Each must answer the status its comment claims
//! (`# → 202 …`), and every `"field": value` its comment shows; reads are repeated until
//! the sink has caught up.

mod common;

use common::*;
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};

const README: &str = include_str!("../README.md");

/// The `curl` lines of each ```sh block between the quick start and the next section.
fn quick_start_blocks() -> Vec<Vec<String>> {
    let start = README.find("## Quick start").expect("a quick start");
    let end = README[start + 3..]
        .find("\n## ")
        .map_or(README.len(), |i| start + 3 + i);
    let mut blocks = Vec::new();
    let mut current: Option<Vec<String>> = None;
    for line in README[start..end].lines() {
        match (line.trim_start().starts_with("```"), current.as_mut()) {
            (true, None) if line.trim() == "```sh" => current = Some(Vec::new()),
            (true, Some(_)) => blocks.extend(current.take().filter(|b: &Vec<String>| !b.is_empty())),
            (false, Some(block)) if line.starts_with("curl ") => block.push(line.to_string()),
            _ => {}
        }
    }
    blocks
}

/// What a line's comment claims: the status, and the `"field": value` pairs shown.
fn claims(comment: &str) -> (Option<u16>, Vec<(String, Value)>) {
    let status = comment
        .split('→')
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|code| code.parse().ok());
    let mut pairs = Vec::new();
    let mut rest = comment;
    while let Some(open) = rest.find('"') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('"') else { break };
        let (name, tail) = (&after[..close], &after[close + 1..]);
        rest = tail;
        let Some(value) = tail.strip_prefix(": ") else { continue };
        let token: String = match value.strip_prefix('"') {
            Some(quoted) => format!("\"{}\"", quoted.split('"').next().unwrap_or_default()),
            None => value.split([',', ' ', '}']).next().unwrap_or_default().to_string(),
        };
        if let Ok(parsed) = serde_json::from_str::<Value>(&token) {
            pairs.push((name.to_string(), parsed));
        }
    }
    (status, pairs)
}

/// `field` anywhere at the top of the answer, or of its first element for a list.
fn field<'a>(answer: &'a Value, name: &str) -> Option<&'a Value> {
    match answer {
        Value::Array(items) => items.first().and_then(|first| first.get(name)),
        other => other.get(name),
    }
}

fn is_write(command: &str) -> bool {
    ["-X POST", "-X PATCH", "-X DELETE"].iter().any(|m| command.contains(m))
        || command.contains("/order?")
        || ["type=C", "type=U", "type=D"].iter().any(|t| command.contains(t))
}

/// Runs one pasted line through a shell; (status, body).
fn run(command: &str) -> (u16, String) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("{command} -s -w '\\n%{{http_code}}'"))
        .output()
        .expect("sh and curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_quick_start_examples_work_as_pasted() {
    let blocks = quick_start_blocks();
    assert!(blocks.len() >= 2, "the REST and the seed examples: {blocks:?}");
    let tmp = tempfile::tempdir().unwrap();
    let (system, port) = start_all(tmp.path(), &[]).await;

    for block in blocks {
        let mut ids: Vec<(&str, String)> = Vec::new();
        for line in block {
            let (command, comment) = line.split_once("  #").unwrap_or((&line, ""));
            let mut command = command.trim().replace("localhost:5000", &format!("127.0.0.1:{port}"));
            for (placeholder, id) in &ids {
                command = command.replace(placeholder, id);
            }
            assert!(!command.contains('<'), "no id for a placeholder in {line}");
            let (status, pairs) = claims(comment);
            let expected = status.unwrap_or(if is_write(&command) { 202 } else { 200 });
            let deadline = Instant::now() + Duration::from_secs(if is_write(&command) { 0 } else { 60 });
            let (got, body) = loop {
                let (got, body) = run(&command);
                let answer: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                let holds = got == expected
                    && answer != Value::Array(Vec::new())
                    && pairs.iter().all(|(name, value)| field(&answer, name) == Some(value));
                if holds || Instant::now() >= deadline {
                    break (got, body);
                }
                std::thread::sleep(Duration::from_millis(300));
            };
            assert_eq!(got, expected, "{line}\nanswered {body}\n{}", system.log_tail());
            let answer: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            for (name, value) in &pairs {
                assert_eq!(field(&answer, name), Some(value), "{line}\nanswered {body}");
            }
            for (name, placeholder) in [
                ("uid", "<uid>"),
                ("order_id", "<order_id>"),
                ("command_id", "<command_id>"),
            ] {
                if let (true, Some(id)) = (is_write(&command), field(&answer, name).and_then(Value::as_i64)) {
                    ids.retain(|(p, _)| *p != placeholder);
                    ids.push((placeholder, id.to_string()));
                }
            }
        }
    }
}
