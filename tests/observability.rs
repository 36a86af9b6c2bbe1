//! Metrics checked for real: `creditstream all` runs under a short load with a real
//! Prometheus scraping it, every PromQL expression of the Grafana dashboard must return
//! data through Prometheus' HTTP API, `promtool check config` passes on
//! config/prometheus.yml, and the scraped /metrics pass `promtool check metrics`. The
//! dashboard also passes Grafana's own schema, strictly (tests/grafana_schema, in Go).

mod common;

use common::*;
use creditstream::topology::partitioner::partition_for;
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::Duration;

const DASHBOARD: &str = include_str!("../grafana/dashboards/creditstream.json");

fn exprs(dashboard: &Value) -> Vec<String> {
    let mut found = Vec::new();
    fn walk(v: &Value, found: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(expr)) = map.get("expr") {
                    found.push(expr.clone());
                }
                map.values().for_each(|v| walk(v, found));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, found)),
            _ => {}
        }
    }
    walk(dashboard, &mut found);
    found
}

fn tool(name: &str) -> String {
    for dir in ["/usr/bin", "/usr/local/bin"] {
        let path = format!("{dir}/{name}");
        if std::path::Path::new(&path).exists() {
            return path;
        }
    }
    panic!("{name} is not installed (scripts/test.sh installs Debian's prometheus package)");
}

#[test]
fn the_dashboard_is_provisionable_and_references_the_datasource_by_uid() {
    let dashboard: Value = serde_json::from_str(DASHBOARD).unwrap();
    assert!(dashboard["uid"].is_string());
    assert!(dashboard.get("__inputs").is_none());
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 10);
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        assert_eq!(
            panel["datasource"]["uid"], "creditstream-prometheus",
            "{}",
            panel["title"]
        );
        for target in panel["targets"].as_array().unwrap() {
            assert_eq!(target["datasource"]["uid"], "creditstream-prometheus");
            assert!(!target["expr"].as_str().unwrap().contains('$'), "no template variables");
        }
    }
    let datasource = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/grafana/provisioning/datasources/prometheus.yml"
    ))
    .unwrap();
    assert!(datasource.contains("uid: creditstream-prometheus"));
}

/// Runs tests/grafana_schema (Grafana's schema, strictly, via the Grafana Foundation SDK) on
/// one dashboard file: (passed, stdout and stderr). One run at a time, so that a cold Go
/// build cache compiles the SDK once.
fn grafana_schema_check(dashboard: &std::path::Path) -> (bool, String) {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let out = Command::new(go(21))
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/grafana_schema"))
        .args(["run", "-mod=readonly", "."])
        .arg(dashboard)
        .output()
        .expect("go run tests/grafana_schema");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn the_dashboard_passes_grafanas_strict_schema() {
    let path = std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/grafana/dashboards/creditstream.json"
    ));
    let (passed, out) = grafana_schema_check(path);
    assert!(
        passed,
        "grafana/dashboards/creditstream.json fails Grafana's schema:\n{out}"
    );
    let dashboard: Value = serde_json::from_str(DASHBOARD).unwrap();
    let panels = dashboard["panels"].as_array().unwrap().len();
    assert!(out.contains(&format!(": ok ({panels} panels, ")), "{out}");
}

#[test]
fn the_grafana_schema_check_rejects_a_broken_dashboard() {
    let mut dashboard: Value = serde_json::from_str(DASHBOARD).unwrap();
    dashboard["creditstreamBroken"] = Value::Bool(true);
    dashboard["panels"][0]["fieldConfig"]["defaults"]["unit"] = Value::from(42);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.json");
    std::fs::write(&path, serde_json::to_string_pretty(&dashboard).unwrap()).unwrap();

    let (passed, out) = grafana_schema_check(&path);
    assert!(!passed, "the broken dashboard passed:\n{out}");
    assert!(out.contains("creditstreamBroken: unexpected field"), "{out}");
    assert!(
        out.contains("panels[0].fieldConfig.defaults.unit: json: cannot unmarshal number"),
        "{out}"
    );
    assert!(out.contains("FAILED with 2 problem(s)"), "{out}");
}

#[test]
fn promtool_accepts_the_prometheus_configs() {
    for file in ["config/prometheus.yml", "config/prometheus-compose.yml"] {
        let path = format!("{}/{file}", env!("CARGO_MANIFEST_DIR"));
        let out = Command::new(tool("promtool"))
            .args(["check", "config", "--syntax-only", &path])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{file}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_dashboard_query_returns_data_from_a_real_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let def = topology(6).await;
    let mysql = database().await;
    let port = free_port();
    let topology_path = topology_file(&def, dir.path());
    let env = vec![
        (
            "CREDITSTREAM__TOPOLOGY_FILE".to_string(),
            topology_path.display().to_string(),
        ),
        ("CREDITSTREAM__KAFKA__BOOTSTRAP_SERVERS".to_string(), bootstrap()),
        ("CREDITSTREAM__MYSQL__URL".to_string(), mysql.url.clone()),
        ("CREDITSTREAM__INGEST__LISTEN".to_string(), format!("127.0.0.1:{port}")),
        (
            "CREDITSTREAM__PROCESSOR__STATE_DIR".to_string(),
            dir.path().join("state").display().to_string(),
        ),
        (
            "CREDITSTREAM__PROCESSOR__RUN_SEED_BRIDGE".to_string(),
            "false".to_string(),
        ),
        ("CREDITSTREAM__SINK__GROUP_ID".to_string(), unique("sink")),
    ];
    let app = spawn("all", &env, port, &dir.path().join("all.log"));
    assert!(
        wait_until(Duration::from_secs(60), || http_get(port, "/healthz").is_some()),
        "creditstream all is up"
    );

    let prom_port = free_port();
    let prom_config = dir.path().join("prometheus.yml");
    std::fs::write(
        &prom_config,
        format!(
            "global:\n  scrape_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: creditstream-all\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n        labels:\n          component: all\n",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config/alerts.yml")
        ),
    )
    .unwrap();
    let mut prometheus = Command::new(tool("prometheus"))
        .arg(format!("--config.file={}", prom_config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");

    // A short load: users, orders (some declined), a bad request, a poison pill.
    let mut uids = Vec::new();
    for i in 0..10 {
        let (status, body) = http(
            port,
            "GET",
            &format!("/user?type=C&name=Zebulon{i}&lname=Quixote&credit_limit=100&credit_balance=100"),
            "",
        )
        .unwrap_or_else(|| panic!("no answer; log:\n{}", app.log_tail()));
        assert_eq!(status, 202, "{body}");
        uids.push(serde_json::from_str::<Value>(&body).unwrap()["uid"].as_i64().unwrap());
    }
    let mut last_order = 0;
    for round in 0..10 {
        for uid in &uids {
            let (status, body) = http(
                port,
                "POST",
                "/v1/orders",
                &format!(r#"{{"uid": {uid}, "amount": {}}}"#, 5 + round * 3),
            )
            .unwrap();
            assert_eq!(status, 202, "{body}");
            last_order = serde_json::from_str::<Value>(&body).unwrap()["order_id"]
                .as_i64()
                .unwrap();
        }
    }
    assert_eq!(http(port, "GET", "/order?uid=1", "").unwrap().0, 400);
    let p = partition_for(b"1", def.partitions) as i32;
    produce(
        &def.inputs.orders,
        &[(Some(p), Some(b"1".to_vec()), Some(b"garbage".to_vec()))],
    );
    let (status, body) = http(port, "GET", &format!("/v1/orders/{last_order}?wait_ms=30000"), "").unwrap();
    assert_eq!(status, 200, "{body}");

    let dashboard: Value = serde_json::from_str(DASHBOARD).unwrap();
    let queries = exprs(&dashboard);
    assert!(queries.len() >= 20);
    let empty = |q: &str| -> bool {
        let path = format!("/api/v1/query?query={}", urlencode(q));
        match http_get(prom_port, &path).and_then(|b| serde_json::from_str::<Value>(&b).ok()) {
            Some(v) => v["data"]["result"].as_array().is_none_or(|r| r.is_empty()),
            None => true,
        }
    };
    let mut missing: Vec<String> = queries.clone();
    let all_answer = wait_until(Duration::from_secs(120), || {
        missing.retain(|q| empty(q));
        missing.is_empty()
    });
    // The alerting rules load, and every metric they watch is one the system registers.
    let rules = http_get(prom_port, "/api/v1/rules?type=alert").unwrap_or_default();
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    assert!(all_answer, "dashboard queries without data: {missing:#?}");
    let alerts = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/alerts.yml")).unwrap();
    let names: Vec<&str> = alerts
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert!(names.len() >= 9, "{names:?}");
    for name in &names {
        assert!(
            rules.contains(&format!("\"name\":\"{name}\"")),
            "{name} not loaded: {rules}"
        );
    }
    // Metrics with labels appear on /metrics only once observed: look them up where they
    // are registered.
    let registered = include_str!("../src/metrics.rs");
    let watched: std::collections::BTreeSet<&str> = alerts
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("creditstream_"))
        .collect();
    for metric in watched {
        assert!(
            registered.contains(&format!("\"{metric}\"")),
            "config/alerts.yml watches {metric}, which src/metrics.rs does not register"
        );
    }

    let metrics = http_get(port, "/metrics").unwrap();
    let mut check = Command::new(tool("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        check.stdin.take().unwrap().write_all(metrics.as_bytes()).unwrap();
    }
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Security: no uid, name or account data in metrics or logs.
    assert!(!metrics.contains(&format!("{}", uids[0])), "no uid in any metric");
    assert!(
        !metrics.contains("Zebulon") && !metrics.contains("Quixote"),
        "no name in any metric"
    );
    let log = std::fs::read_to_string(&app.log).unwrap();
    assert!(
        !log.contains("Zebulon") && !log.contains("Quixote"),
        "no name in the logs"
    );
}
