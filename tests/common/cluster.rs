//! The three-broker cluster of `scripts/stack.sh up --brokers 3`, as the liveness tests
//! use it: where it is, which broker leads a partition or coordinates a group or a
//! transactional id, and the faults a broker can meet (kill -9, freeze, controlled stop,
//! restart). The cluster runs beside the single-broker stack, with its own state dir and
//! ports, given by the environment `scripts/test.sh` sets:
//! `CREDITSTREAM_CLUSTER_STATE_DIR`, `CREDITSTREAM_CLUSTER_KAFKA_PORT`,
//! `CREDITSTREAM_CLUSTER_CONTROLLER_PORT`.

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use std::process::Command;
use std::time::{Duration, Instant};

pub struct Cluster {
    env: Vec<(&'static str, String)>,
    bootstrap: String,
}

fn required(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run the liveness tests through scripts/test.sh, which starts the three-broker cluster"
        )
    })
}

impl Cluster {
    /// The cluster the environment names; every helper of `common` is pointed at it.
    pub fn attach() -> Cluster {
        let env = vec![
            ("CREDITSTREAM_STATE_DIR", required("CREDITSTREAM_CLUSTER_STATE_DIR")),
            ("KAFKA_PORT", required("CREDITSTREAM_CLUSTER_KAFKA_PORT")),
            (
                "KAFKA_CONTROLLER_PORT",
                required("CREDITSTREAM_CLUSTER_CONTROLLER_PORT"),
            ),
        ];
        let mut cluster = Cluster {
            env,
            bootstrap: String::new(),
        };
        cluster.bootstrap = cluster.run(&["bootstrap"]).expect("the cluster's bootstrap servers");
        super::use_bootstrap(&cluster.bootstrap);
        cluster
    }

    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// Runs `scripts/stack.sh ARGS` against this cluster; its trimmed output if it succeeded.
    fn run(&self, args: &[&str]) -> Option<String> {
        let script = std::env::var("CREDITSTREAM_STACK")
            .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/stack.sh").into());
        let mut command = Command::new(script);
        command.args(args);
        for (key, value) in &self.env {
            command.env(key, value);
        }
        let output = command.output().expect("running scripts/stack.sh");
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
    }

    fn must(&self, args: &[&str]) {
        assert!(
            self.run(args).is_some(),
            "scripts/stack.sh {args:?} failed on the cluster"
        );
    }

    pub fn kill(&self, broker: u32) {
        self.must(&["kill", &format!("broker-{broker}")]);
    }

    pub fn freeze(&self, broker: u32) {
        self.must(&["freeze", &format!("broker-{broker}")]);
    }

    pub fn thaw(&self, broker: u32) {
        self.must(&["thaw", &format!("broker-{broker}")]);
    }

    /// A controlled shutdown (SIGTERM), waited for.
    pub fn stop(&self, broker: u32) {
        self.must(&["stop", &format!("broker-{broker}")]);
    }

    /// Starts the broker and waits until it answers.
    pub fn start(&self, broker: u32) {
        self.must(&["start", &format!("broker-{broker}")]);
    }

    /// The node ids of the brokers, in order (broker i has node id i + 1).
    pub fn brokers(&self) -> Vec<u32> {
        vec![1, 2, 3]
    }

    /// The broker (1-based index) whose node leads `topic`/`partition`, if one does.
    pub fn leader(&self, topic: &str, partition: i32) -> Option<u32> {
        let node: u32 = self.run(&["leader", topic, &partition.to_string()])?.parse().ok()?;
        Some(node - 1)
    }

    /// The broker coordinating consumer group `group`.
    pub fn group_coordinator(&self, group: &str) -> Option<u32> {
        let node: u32 = self.run(&["coordinator", "group", group])?.parse().ok()?;
        Some(node - 1)
    }

    /// The broker coordinating the transactions of `transactional_id`.
    pub fn transaction_coordinator(&self, transactional_id: &str) -> Option<u32> {
        let node: u32 = self
            .run(&["coordinator", "transaction", transactional_id])?
            .parse()
            .ok()?;
        Some(node - 1)
    }

    /// The controller's log, where it says which brokers it fenced.
    fn controller_log(&self) -> std::path::PathBuf {
        std::path::Path::new(&self.env[0].1).join("kafka/controller/server.log")
    }

    /// Where the controller's log ends now, for [`Self::fenced_since`].
    pub fn controller_log_mark(&self) -> u64 {
        std::fs::metadata(self.controller_log()).map(|m| m.len()).unwrap_or(0)
    }

    /// The brokers the controller fenced because their heartbeats lapsed since `mark`, with
    /// its log line: on a machine too busy for a broker to heartbeat within the cluster's
    /// session, the cluster itself drops below min.insync.replicas, whatever the clients do.
    /// A broker already fenced (one starting up) is not counted: the controller says that
    /// change was a no-op.
    pub fn fenced_since(&self, mark: u64) -> Vec<(u32, String)> {
        let log = std::fs::read(self.controller_log()).unwrap_or_default();
        // A log rolled over since the mark is read whole.
        let from = if (mark as usize) <= log.len() { mark as usize } else { 0 };
        let text = String::from_utf8_lossy(&log[from..]);
        let mut lines = text.lines().peekable();
        let mut fenced = Vec::new();
        while let Some(line) = lines.next() {
            if !line.contains("because its session has timed out") {
                continue;
            }
            if lines
                .peek()
                .is_some_and(|next| next.contains("no-op registration change"))
            {
                continue;
            }
            let node = line
                .split("Fencing broker ")
                .nth(1)
                .and_then(|rest| rest.split(' ').next())
                .and_then(|id| id.parse::<u32>().ok());
            if let Some(node) = node {
                fenced.push((node - 1, line.chars().take(200).collect()));
            }
        }
        fenced
    }

    /// Waits until all three brokers are up and every partition of every topic has a leader
    /// and its full ISR; how long that took.
    ///
    /// Asked with one client of this process, not `scripts/stack.sh isr-full`: that starts a
    /// JVM (about 2 s of CPU) per look, and looking twice a second while a broker warms up
    /// took most of a core from the brokers whose coordinator loads the tests measure.
    pub fn wait_isr_full(&self, timeout: Duration) -> Option<Duration> {
        let client: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .expect("a metadata client for the cluster");
        let started = Instant::now();
        while started.elapsed() < timeout {
            if isr_full(&client, self.brokers().len()) {
                return Some(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        None
    }
}

/// Whether the cluster lists all its `brokers` and every partition has a leader and an ISR
/// as long as its replica list (a broker that is down or fenced is not listed; its replicas
/// leave the ISRs).
fn isr_full(client: &BaseConsumer, brokers: usize) -> bool {
    let Ok(metadata) = client.fetch_metadata(None, Duration::from_secs(5)) else {
        return false;
    };
    metadata.brokers().len() == brokers
        && metadata.topics().iter().all(|topic| {
            topic.error().is_none()
                && topic
                    .partitions()
                    .iter()
                    .all(|p| p.error().is_none() && p.leader() >= 0 && p.isr().len() == p.replicas().len())
        })
}
