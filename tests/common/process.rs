//! The real `creditstream` binary as a child process (start, signal, freeze, read its
//! log and metrics), the scripts it runs beside, and the per-test directory that keeps
//! every process's log when a test fails.

use super::{bootstrap, database, http_get, topology, topology_file, unique, wait_until};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A `creditstream` child process, killed when dropped.
pub struct Running {
    pub child: Child,
    pub metrics_port: u16,
    pub log: PathBuf,
}

impl Running {
    pub fn sigkill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Freezes the process (SIGSTOP): it keeps its sockets but does nothing, heartbeats
    /// included, until [`Running::thaw`].
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill {signal} failed");
    }

    /// How the child exited, if it has.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub fn sigterm(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        self.child.wait().expect("wait")
    }

    /// The end of the child's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    pub fn metric(&self, name: &str) -> Option<f64> {
        let body = http_get(self.metrics_port, "/metrics")?;
        body.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .reduce(|a, b| a + b)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `creditstream <subcommand>` with the given config overrides (CREDITSTREAM__ keys).
/// It logs at `info`, or as `CREDITSTREAM_TEST_PROCESS_LOG` says (an `EnvFilter`, e.g.
/// `info,librdkafka=debug` beside `CREDITSTREAM__KAFKA__CLIENT__DEBUG=eos,broker`, which
/// turns librdkafka's debug contexts on).
pub fn spawn(subcommand: &str, env: &[(String, String)], metrics_port: u16, log: &Path) -> Running {
    let log_file = std::fs::File::create(log).expect("log file");
    let err_file = log_file.try_clone().expect("log file");
    let mut command = Command::new(env!("CARGO_BIN_EXE_creditstream"));
    command
        .arg(subcommand)
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(err_file)
        .env(
            "RUST_LOG",
            std::env::var("CREDITSTREAM_TEST_PROCESS_LOG").unwrap_or_else(|_| "info".into()),
        );
    for (k, v) in env {
        command.env(k, v);
    }
    Running {
        child: command.spawn().expect("spawn creditstream"),
        metrics_port,
        log: log.to_path_buf(),
    }
}

/// A test's directory (every process's log), removed only if the test passes (or kept
/// anyway when `CREDITSTREAM_TEST_KEEP_LOGS` is set, to read a passing run's logs).
pub struct KeptOnFailure(tempfile::TempDir);

impl KeptOnFailure {
    pub fn new(test: &str) -> Self {
        Self(
            tempfile::Builder::new()
                .prefix(&format!("{test}-"))
                .tempdir()
                .expect("a temporary directory"),
        )
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for KeptOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("CREDITSTREAM_TEST_KEEP_LOGS").is_some() {
            self.0.disable_cleanup(true);
            eprintln!("logs kept in {}", self.0.path().display());
        }
    }
}

/// Runs `scripts/stack.sh` (or `CREDITSTREAM_STACK`) with `args`; fails the test if it fails.
pub fn stack(args: &[&str]) {
    let script = std::env::var("CREDITSTREAM_STACK")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/stack.sh").into());
    let status = Command::new(script)
        .args(args)
        .status()
        .expect("running scripts/stack.sh");
    assert!(status.success(), "scripts/stack.sh {args:?} failed");
}

/// `go` for the Go checks (tests/grafana_schema, tests/k8s_manifests): from PATH, else where
/// Go's own tarball installs it. Fails (never skips) without it, or with a Go older than
/// `min_minor` (1.`min_minor`).
pub fn go(min_minor: u32) -> String {
    let on_path = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("go"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let go = on_path
        .into_iter()
        .chain([std::path::PathBuf::from("/usr/local/go/bin/go")])
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!("go is not installed: the Go checks in tests/ need Go (scripts/setup.sh installs Debian's golang-go when go is missing)")
        });
    let go = go.display().to_string();
    let version = std::process::Command::new(&go)
        .args(["env", "GOVERSION"])
        .output()
        .expect("run go env");
    let version = String::from_utf8_lossy(&version.stdout).trim().to_string();
    let minor: u32 = version
        .strip_prefix("go1.")
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|minor| minor.parse().ok())
        .unwrap_or(0);
    assert!(
        minor >= min_minor,
        "{go} is {version:?}; this check needs Go >= 1.{min_minor}"
    );
    go
}

/// `creditstream all` (ingest, processor, sink in one process) on fresh topics of 6
/// partitions and a fresh database, listening on a free port, ready; `extra` are more
/// `CREDITSTREAM__` settings. Returns the process and its port.
pub async fn start_all(dir: &Path, extra: &[(&str, &str)]) -> (Running, u16) {
    let def = topology(6).await;
    let mysql = database().await;
    let port = free_port();
    let mut env: Vec<(String, String)> = vec![
        (
            "CREDITSTREAM__TOPOLOGY_FILE".into(),
            topology_file(&def, dir).display().to_string(),
        ),
        ("CREDITSTREAM__KAFKA__BOOTSTRAP_SERVERS".into(), bootstrap()),
        ("CREDITSTREAM__MYSQL__URL".into(), mysql.url.clone()),
        ("CREDITSTREAM__INGEST__LISTEN".into(), format!("127.0.0.1:{port}")),
        (
            "CREDITSTREAM__PROCESSOR__STATE_DIR".into(),
            dir.join("state").display().to_string(),
        ),
        ("CREDITSTREAM__PROCESSOR__RUN_SEED_BRIDGE".into(), "false".into()),
        ("CREDITSTREAM__SINK__GROUP_ID".into(), unique("sink")),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let system = spawn("all", &env, port, &dir.join("all.log"));
    assert!(
        wait_until(Duration::from_secs(120), || http_get(port, "/readyz").is_some()),
        "creditstream all is ready:\n{}",
        system.log_tail()
    );
    (system, port)
}
