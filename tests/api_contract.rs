//! The HTTP API keeps the contract its OpenAPI document states, checked the way a client
//! that generates code from `/openapi.json` would: schemathesis (PyPI, installed by
//! scripts/setup.sh) runs every check and every phase, stateful included, against
//! `creditstream all` on the real broker and database, with a bounded number of examples
//! (tests/schemathesis/schemathesis.toml says which check is relaxed where, and why).

mod common;

use common::*;
use std::process::Command;

fn schemathesis() -> String {
    let path = std::env::var("CREDITSTREAM_SCHEMATHESIS").unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap_or_default();
        format!("{home}/.cache/creditstream/tools/schemathesis-4.32.5/bin/schemathesis")
    });
    assert!(
        std::path::Path::new(&path).is_file(),
        "schemathesis is not installed at {path}: scripts/setup.sh (run by scripts/test.sh) installs it"
    );
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_contract_violation() {
    let fuzzer = schemathesis();
    let tmp = tempfile::tempdir().unwrap();
    // The document states `wait_ms`'s bound; a small one keeps the long polls the fuzzer
    // tries at the maximum short. A write after this client's own delete is refused once
    // the delete is done, waited for up to the read-your-writes bound: behind the fuzzing
    // phase's thousands of commands, on a busy CI machine, the shipped 5 s was once too
    // short (the stateful phase's PATCH after a DELETE got 202). The contract is checked
    // here, not the pipeline's speed, so the bound is generous.
    let (system, port) = start_all(
        tmp.path(),
        &[
            ("CREDITSTREAM__INGEST__MAX_WAIT_MS", "2000"),
            ("CREDITSTREAM__INGEST__READ_YOUR_WRITES_MS", "30000"),
        ],
    )
    .await;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/schemathesis");
    let report = tmp.path().join("report");
    // Run from the test's temporary directory, so nothing the fuzzer keeps lands in the clone.
    let out = Command::new(&fuzzer)
        .current_dir(tmp.path())
        .env("PYTHONPATH", dir)
        .env("NO_COLOR", "1")
        .args([
            "--config-file",
            &format!("{dir}/schemathesis.toml"),
            "run",
            &format!("http://127.0.0.1:{port}/openapi.json"),
            "--seed",
            "20261128",
            "--report-dir",
        ])
        .arg(&report)
        .output()
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "schemathesis found contract violations:\n{stdout}\n{stderr}\n--- creditstream log ---\n{}",
        system.log_tail()
    );
    assert!(stdout.contains("Stateful"), "the stateful phase ran:\n{stdout}");
}
