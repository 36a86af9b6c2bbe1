//! The Kubernetes manifests in deploy/kubernetes/: every document decodes strictly into
//! Kubernetes' own API types (tests/k8s_manifests, in Go, with k8s.io/api), a broken one is
//! rejected, and the environment they give the containers is creditstream configuration.
//! (Their Prometheus scrape configuration uses Kubernetes service discovery, which Debian's
//! promtool is built without, so promtool cannot check it here.)

mod common;

use common::go;
use creditstream::config::Config;
use std::path::{Path, PathBuf};
use std::process::Command;

const CHECK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/k8s_manifests");

fn manifests() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("deploy/kubernetes")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "{files:?}");
    files
}

/// Runs the Go check with `args`: (passed, stdout, stderr). One run at a time, so that a
/// cold Go build cache compiles k8s.io/api once.
fn check(args: &[&str], files: &[PathBuf]) -> (bool, String, String) {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let out = Command::new(go(26))
        .current_dir(CHECK)
        .args(["run", "-mod=readonly", "."])
        .args(args)
        .args(files)
        .output()
        .expect("go run tests/k8s_manifests");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_manifest_decodes_strictly_into_kubernetes_types() {
    let files = manifests();
    let (ok, out, err) = check(&[], &files);
    assert!(ok, "{out}{err}");
    for file in &files {
        assert!(out.contains(&format!("{}: ok", file.display())), "{out}");
    }
}

#[test]
fn a_manifest_with_a_misspelled_field_is_rejected() {
    let broken = Path::new(CHECK).join("testdata/broken.yaml");
    let (ok, out, err) = check(&[], &[broken]);
    assert!(!ok, "{out}");
    assert!(err.contains("replicaz"), "{err}");
}

#[test]
fn the_environment_the_manifests_set_is_creditstream_configuration() {
    let (ok, out, err) = check(&["-env"], &manifests());
    assert!(ok, "{err}");
    let pairs: Vec<(String, String)> = out
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.replace("<metadata.name>", "processor-0")))
        .collect();
    assert!(pairs.len() >= 8, "{out}");
    for (name, _) in &pairs {
        assert!(
            name.starts_with("CREDITSTREAM__"),
            "{name} is not a creditstream setting"
        );
    }
    // Unknown keys and bad values are rejected by the configuration, with the key named.
    let config = Config::load_from(None, pairs.clone()).unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert_eq!(
        config.processor.replica_id, "processor-0",
        "the pod's name is its identity"
    );
    assert_eq!(config.processor.state_dir, Path::new("/var/lib/creditstream/state"));
    assert_eq!(config.processor.metrics_listen, "0.0.0.0:9101");
    assert!(config.mysql.url.starts_with("mysql://"));
    assert_eq!(
        (config.kafka.replication_factor, config.kafka.min_insync_replicas),
        (3, 2),
        "the topics a cluster gets survive one broker away"
    );
}
