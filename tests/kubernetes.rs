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

/// One workload of the manifests and the environment its containers get, as the Go check
/// prints it: a `[Kind/name replicas=N]` line, then NAME=VALUE lines (fieldRefs as `<path>`).
struct Workload {
    name: String,
    replicas: u32,
    env: Vec<(String, String)>,
}

impl Workload {
    /// The configuration pod `ordinal` of this workload runs with, fieldRefs resolved as
    /// Kubernetes resolves them for that pod.
    fn config(&self, ordinal: u32) -> Config {
        let pod = format!("{}-{ordinal}", self.name.split('/').nth(1).unwrap_or_default());
        let pairs: Vec<(String, String)> = self
            .env
            .iter()
            .map(|(k, v)| {
                let v = v.replace("<metadata.name>", &pod).replace(
                    "<metadata.labels['apps.kubernetes.io/pod-index']>",
                    &ordinal.to_string(),
                );
                assert!(
                    !v.contains('<'),
                    "{}: {k}={v} is a field this check does not resolve",
                    self.name
                );
                (k.clone(), v)
            })
            .collect();
        // Unknown keys and bad values are refused by the configuration, with the key named.
        Config::load_from(None, pairs).unwrap_or_else(|e| panic!("{} pod {ordinal}: {e}", self.name))
    }

    /// One configuration per pod the workload runs.
    fn pods(&self) -> Vec<Config> {
        (0..self.replicas).map(|i| self.config(i)).collect()
    }
}

fn workloads() -> Vec<Workload> {
    let (ok, out, err) = check(&["-env"], &manifests());
    assert!(ok, "{err}");
    let mut found: Vec<Workload> = Vec::new();
    for line in out.lines() {
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let (name, replicas) = header.split_once(" replicas=").expect("a workload header");
            found.push(Workload {
                name: name.to_string(),
                replicas: replicas.parse().expect("a replica count"),
                env: Vec::new(),
            });
        } else if let Some((k, v)) = line.split_once('=') {
            assert!(k.starts_with("CREDITSTREAM__"), "{k} is not a creditstream setting");
            found
                .last_mut()
                .expect("a workload before its environment")
                .env
                .push((k.to_string(), v.to_string()));
        }
    }
    found
}

fn workload(all: &[Workload], name: &str) -> usize {
    all.iter()
        .position(|w| w.name == name)
        .unwrap_or_else(|| panic!("no {name} in deploy/kubernetes"))
}

#[test]
fn every_pod_the_manifests_run_gets_valid_creditstream_configuration() {
    let all = workloads();
    assert!(all.len() >= 4, "ingest, processor, sink and the topics Job");
    for w in &all {
        assert!(w.env.len() >= 8, "{}: {:?}", w.name, w.env);
        let configs = w.pods();
        assert!(configs.iter().all(|c| c.mysql.url.starts_with("mysql://")));
    }
}

#[test]
fn every_processor_pod_has_its_own_stable_identity_and_state() {
    let all = workloads();
    let processors = &all[workload(&all, "StatefulSet/processor")];
    let pods = processors.pods();
    assert!(pods.len() >= 2);
    for (i, config) in pods.iter().enumerate() {
        assert_eq!(
            config.processor.replica_id,
            format!("processor-{i}"),
            "the pod's name is its identity"
        );
        assert_eq!(config.processor.state_dir, Path::new("/var/lib/creditstream/state"));
        assert_eq!(config.processor.metrics_listen, "0.0.0.0:9101");
        // Brokers refuse a session below group.min.session.timeout.ms, 6 s by default.
        assert!(
            config.processor.session_timeout_ms >= 6000,
            "{}",
            config.processor.session_timeout_ms
        );
    }
}

#[test]
fn every_ingest_pod_mints_ids_with_its_own_node_id() {
    let all = workloads();
    let ingest = &all[workload(&all, "StatefulSet/ingest")];
    assert!(ingest.replicas >= 2, "the check needs more than one ingest pod");
    let ids: std::collections::BTreeSet<u16> = ingest.pods().iter().map(|c| c.ingest.node_id).collect();
    assert_eq!(
        ids.len(),
        ingest.replicas as usize,
        "two ingest pods share a node id: {ids:?}"
    );
}

#[test]
fn the_topics_job_creates_topics_that_survive_a_broker_away() {
    let all = workloads();
    let job = &all[workload(&all, "Job/creditstream-topics")];
    for config in job.pods() {
        assert_eq!(
            (config.kafka.replication_factor, config.kafka.min_insync_replicas),
            (3, 2),
            "whatever topology file the image holds"
        );
    }
}
