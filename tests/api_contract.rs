//! The HTTP API keeps the contract its OpenAPI document states, checked the way a client
//! that generates code from `/openapi.json` would: schemathesis (PyPI, installed by
//! scripts/setup.sh) runs every check and every phase, stateful included, against
//! `creditstream all` on the real broker and database, with a bounded number of examples
//! (tests/schemathesis/schemathesis.toml says which check is relaxed where, and why).

mod common;

use common::*;
use std::process::Command;
use std::time::Duration;

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
    let def = topology(6).await;
    let mysql = database().await;
    let port = free_port();
    let env: Vec<(String, String)> = vec![
        (
            "CREDITSTREAM__TOPOLOGY_FILE".into(),
            topology_file(&def, tmp.path()).display().to_string(),
        ),
        ("CREDITSTREAM__KAFKA__BOOTSTRAP_SERVERS".into(), bootstrap()),
        ("CREDITSTREAM__MYSQL__URL".into(), mysql.url.clone()),
        ("CREDITSTREAM__INGEST__LISTEN".into(), format!("127.0.0.1:{port}")),
        (
            "CREDITSTREAM__PROCESSOR__STATE_DIR".into(),
            tmp.path().join("state").display().to_string(),
        ),
        ("CREDITSTREAM__PROCESSOR__RUN_SEED_BRIDGE".into(), "false".into()),
        ("CREDITSTREAM__SINK__GROUP_ID".into(), unique("sink")),
        // The document states this bound; a small one keeps the long polls the fuzzer
        // tries at the maximum short.
        ("CREDITSTREAM__INGEST__MAX_WAIT_MS".into(), "2000".into()),
    ];
    let system = spawn("all", &env, port, &tmp.path().join("all.log"));
    assert!(
        wait_until(Duration::from_secs(120), || http_get(port, "/readyz").is_some()),
        "creditstream all is ready:\n{}",
        system.log_tail()
    );
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
