//! Configuration: defaults, file and environment layering, and rejection of bad keys
//! and values with the key named.

use creditstream::config::{Config, ConfigError, LogFormat};
use creditstream::topology::definition::{ProcessingGuarantee, TopologyDefinition};
use std::io::Write;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn key_error(result: Result<Config, ConfigError>) -> (String, String) {
    match result {
        Err(ConfigError::Key { key, message }) => (key, message),
        other => panic!("expected a key error, got {other:?}"),
    }
}

#[test]
fn defaults_point_at_the_local_stack() {
    let config = Config::load_from(None, env(&[])).unwrap();
    assert_eq!(config.kafka.bootstrap_servers, "127.0.0.1:9092");
    assert_eq!(
        config.mysql.url,
        "mysql://creditstream:creditstream@127.0.0.1:3306/demodb"
    );
    assert_eq!(config.ingest.listen, "127.0.0.1:5000");
    assert_eq!(config.processor.commit_interval_ms, 100);
    assert_eq!(config.log.format, LogFormat::Text);
    assert!(config.kafka.client.is_empty());
}

#[test]
fn file_then_environment_override_the_defaults() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(
        file,
        "[ingest]\nlisten = \"0.0.0.0:8080\"\nnode_id = 3\n[kafka.client]\n\"security.protocol\" = \"SASL_SSL\""
    )
    .unwrap();
    let config = Config::load_from(
        Some(file.path()),
        env(&[
            ("CREDITSTREAM__INGEST__NODE_ID", "9"),
            ("CREDITSTREAM__KAFKA__BOOTSTRAP_SERVERS", "broker-1:9092,broker-2:9092"),
            ("CREDITSTREAM__LOG__FORMAT", "json"),
            ("UNRELATED", "x"),
        ]),
    )
    .unwrap();
    assert_eq!(config.ingest.listen, "0.0.0.0:8080");
    assert_eq!(config.ingest.node_id, 9);
    assert_eq!(config.kafka.bootstrap_servers, "broker-1:9092,broker-2:9092");
    assert_eq!(
        config.kafka.client.get("security.protocol").map(String::as_str),
        Some("SASL_SSL")
    );
    assert_eq!(config.log.format, LogFormat::Json);
}

#[test]
fn librdkafka_properties_may_be_numbers_or_booleans_in_a_file_or_the_environment() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(
        file,
        "[kafka.client]\n\"socket.timeout.ms\" = 30000\n\"enable.ssl.certificate.verification\" = false"
    )
    .unwrap();
    let config = Config::load_from(
        Some(file.path()),
        env(&[("CREDITSTREAM__KAFKA__CLIENT__fetch.wait.max.ms", "100")]),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let client = &config.kafka.client;
    assert_eq!(client.get("socket.timeout.ms").map(String::as_str), Some("30000"));
    assert_eq!(
        client.get("enable.ssl.certificate.verification").map(String::as_str),
        Some("false")
    );
    assert_eq!(client.get("fetch.wait.max.ms").map(String::as_str), Some("100"));
}

#[test]
fn unknown_keys_are_rejected_with_their_path() {
    let (key, message) = key_error(Config::from_toml_overlay("[ingest]\nlisten_port = 5000"));
    assert_eq!(key, "ingest.listen_port");
    assert!(message.contains("unknown field"), "{message}");
    let (key, message) = key_error(Config::load_from(
        None,
        env(&[("CREDITSTREAM__SINKK__BATCH_SIZE", "5")]),
    ));
    assert_eq!(key, "sinkk");
    assert!(message.contains("unknown field"), "{message}");
}

#[test]
fn invalid_values_are_rejected_with_their_key() {
    for (overlay, expected_key) in [
        ("[ingest]\nnode_id = 5000", "ingest.node_id"),
        ("[ingest]\nnode_id = \"one\"", "ingest.node_id"),
        ("[ingest]\nlisten = \"localhost\"", "ingest.listen"),
        ("[sink]\nbatch_size = 0", "sink.batch_size"),
        (
            "[processor]\ntransaction_timeout_ms = 100",
            "processor.transaction_timeout_ms",
        ),
        ("[mysql]\nurl = \"postgres://x\"", "mysql.url"),
        ("[log]\nformat = \"yaml\"", "log.format"),
        (
            "[sink]\nretry_initial_ms = 500\nretry_max_ms = 100",
            "sink.retry_max_ms",
        ),
    ] {
        let (key, message) = key_error(Config::from_toml_overlay(overlay));
        assert_eq!(key, expected_key, "{overlay}: {message}");
    }
    assert!(matches!(
        Config::from_toml_overlay("[ingest"),
        Err(ConfigError::Syntax { .. })
    ));
}

#[test]
fn the_shipped_topology_file_parses_and_describes_itself() {
    let def = TopologyDefinition::builtin();
    assert_eq!(def.partitions, 6);
    assert_eq!(def.processing_guarantee, ProcessingGuarantee::ExactlyOnceV2);
    let text = def.describe();
    assert!(text.starts_with("Topologies:\n   Sub-topology: 0\n"));
    assert!(text.contains(&format!("Source: orders-source (topics: [{}])", def.inputs.orders)));
    assert!(text.contains("Processor: credit-check (stores: [credit-store])"));
    assert!(text.contains(&format!("Sink: decisions-sink (topic: {})", def.outputs.decisions)));
    assert!(def.topics().iter().all(|t| t.partitions == 6));
}

#[test]
fn bad_topology_files_are_rejected() {
    let good = include_str!("../topologies/credit-check.toml");
    assert!(TopologyDefinition::from_toml(&good.replace("partitions = 6", "partitions = 0")).is_err());
    assert!(TopologyDefinition::from_toml(&good.replace("exactly_once_v2", "exactly_twice")).is_err());
    assert!(TopologyDefinition::from_toml(&format!("{good}\nextra = 1")).is_err());
    assert!(TopologyDefinition::from_toml(
        &good.replace("\"creditstream.orders\"", "\"creditstream.order-decisions\"")
    )
    .is_err());
}
