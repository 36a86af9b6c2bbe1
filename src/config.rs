//! Configuration: `config/default.toml` (compiled in) overlaid by `--config FILE`, then by
//! `CREDITSTREAM__SECTION__KEY` environment variables. Every struct denies unknown fields,
//! so a misspelt key stops start-up with the key's path instead of being ignored.

use crate::topology::definition::{DefinitionError, TopologyDefinition};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const DEFAULTS: &str = include_str!("../config/default.toml");
const ENV_PREFIX: &str = "CREDITSTREAM__";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{origin} is not valid TOML: {message}")]
    Syntax { origin: String, message: String },
    #[error("config key `{key}`: {message}")]
    Key { key: String, message: String },
    #[error("topology file {path}: {source}")]
    Topology { path: PathBuf, source: DefinitionError },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub topology_file: PathBuf,
    pub kafka: KafkaConfig,
    pub ingest: IngestConfig,
    pub processor: ProcessorConfig,
    pub sink: SinkConfig,
    pub mysql: MysqlConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    pub bootstrap_servers: String,
    pub admin_timeout_ms: u64,
    /// Replication factor of the topics `creditstream topics` creates; 0 takes the
    /// topology file's. Production clusters: 3.
    pub replication_factor: i32,
    /// `min.insync.replicas` set on the topics `creditstream topics` creates; 0 leaves the
    /// broker's default. Production clusters: 2 (with replication factor 3).
    pub min_insync_replicas: i32,
    /// librdkafka properties passed through to every client. Values may be written as
    /// numbers or booleans (`"socket.timeout.ms" = 30000`, or the same as an environment
    /// variable); librdkafka takes them all as text.
    #[serde(default, deserialize_with = "librdkafka_properties")]
    pub client: BTreeMap<String, String>,
}

/// A table of librdkafka properties: every value a string, a number or a boolean, as text.
fn librdkafka_properties<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let table = BTreeMap::<String, toml::Value>::deserialize(d)?;
    table
        .into_iter()
        .map(|(key, value)| match value {
            toml::Value::String(text) => Ok((key, text)),
            toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_) => Ok((key, value.to_string())),
            other => Err(serde::de::Error::custom(format!(
                "kafka.client.{key}: a librdkafka property is a string, a number or a boolean, not a {}",
                other.type_str()
            ))),
        })
        .collect()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    pub listen: String,
    pub node_id: u16,
    pub produce_timeout_ms: u64,
    pub linger_ms: u64,
    pub max_body_bytes: u64,
    pub idempotency_cache_size: usize,
    pub auth_token: String,
    pub max_wait_ms: u64,
    pub read_your_writes_ms: u64,
    pub pending_writes_size: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessorConfig {
    pub replica_id: String,
    pub state_dir: PathBuf,
    pub commit_interval_ms: u64,
    pub commit_min_interval_ms: u64,
    pub commit_max_records: usize,
    /// How often every input offset of every task is committed again, even one nothing was
    /// read of (an idle replica commits for it alone), ms (default 1 h): the broker expires
    /// the committed offset of a topic the group does not subscribe to
    /// `offsets.retention.minutes` after its last commit, and only `orders` is subscribed.
    pub offsets_refresh_ms: u64,
    pub max_task_idle_ms: u64,
    pub buffered_records_per_partition: usize,
    pub num_standby_replicas: usize,
    /// Stream threads of the replica, each its own group member (default 1).
    pub num_stream_threads: usize,
    pub session_timeout_ms: u64,
    pub transaction_timeout_ms: u64,
    /// librdkafka linger of the stream threads' producers, ms (default 5).
    pub linger_ms: u64,
    pub block_cache_mb: usize,
    pub write_buffer_mb: usize,
    pub metrics_listen: String,
    /// Whether this replica runs the seed bridge, when the topology enables it (default
    /// true). Its task p runs beside credit-check task p, so every replica of one
    /// application must agree, or the seed partitions of some tasks go unread.
    pub run_seed_bridge: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    pub group_id: String,
    pub batch_size: usize,
    pub linger_ms: u64,
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    pub metrics_listen: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MysqlConfig {
    pub url: String,
    pub pool_max: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub level: String,
    pub format: LogFormat,
}

fn parse_toml(origin: &str, text: &str) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>().map_err(|e| ConfigError::Syntax {
        origin: origin.to_string(),
        message: e.to_string(),
    })
}

/// Overlays `top` onto `base`, table by table.
fn merge(base: &mut toml::Table, top: toml::Table) {
    for (key, value) in top {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(t)) => merge(b, t),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// An environment value: a TOML literal when it parses as one (numbers, booleans), else text.
fn env_value(raw: &str) -> toml::Value {
    match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) => match t.remove("v") {
            Some(v @ (toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_))) => v,
            _ => toml::Value::String(raw.to_string()),
        },
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

/// The overlay made of `CREDITSTREAM__SECTION__KEY=value` variables.
fn env_overlay(vars: impl IntoIterator<Item = (String, String)>) -> Result<toml::Table, ConfigError> {
    let mut overlay = toml::Table::new();
    for (name, raw) in vars {
        let Some(path) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let parts: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
        if parts.iter().any(String::is_empty) {
            return Err(ConfigError::Key {
                key: name.clone(),
                message: "empty path segment in variable name".into(),
            });
        }
        let mut table = &mut overlay;
        for part in &parts[..parts.len() - 1] {
            let entry = table
                .entry(part.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            table = match entry {
                toml::Value::Table(t) => t,
                _ => {
                    return Err(ConfigError::Key {
                        key: name.clone(),
                        message: "conflicts with another variable".into(),
                    })
                }
            };
        }
        table.insert(parts[parts.len() - 1].clone(), env_value(&raw));
    }
    Ok(overlay)
}

impl Config {
    /// Defaults, then `file`, then the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_from(file, std::env::vars())
    }

    /// Defaults, then `file`, then the given variables (tests pass their own).
    pub fn load_from(
        file: Option<&Path>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut table = parse_toml("config/default.toml", DEFAULTS)?;
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            merge(&mut table, parse_toml(&path.display().to_string(), &text)?);
        }
        merge(&mut table, env_overlay(vars)?);
        Self::from_table(table)
    }

    /// Parses a complete configuration from TOML text layered over the defaults.
    pub fn from_toml_overlay(text: &str) -> Result<Self, ConfigError> {
        let mut table = parse_toml("config/default.toml", DEFAULTS)?;
        merge(&mut table, parse_toml("overlay", text)?);
        Self::from_table(table)
    }

    fn from_table(table: toml::Table) -> Result<Self, ConfigError> {
        let config: Config =
            serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| ConfigError::Key {
                key: e.path().to_string(),
                message: e.inner().to_string(),
            })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, message: String| {
            Err(ConfigError::Key {
                key: key.into(),
                message,
            })
        };
        for (key, addr) in [
            ("ingest.listen", &self.ingest.listen),
            ("processor.metrics_listen", &self.processor.metrics_listen),
            ("sink.metrics_listen", &self.sink.metrics_listen),
        ] {
            if addr.parse::<std::net::SocketAddr>().is_err() {
                return bad(key, format!("{addr:?} is not an address like 127.0.0.1:5000"));
            }
        }
        if self.kafka.bootstrap_servers.trim().is_empty() {
            return bad("kafka.bootstrap_servers", "must not be empty".into());
        }
        if self.ingest.node_id > 1023 {
            return bad(
                "ingest.node_id",
                format!("{} is out of range 0..=1023", self.ingest.node_id),
            );
        }
        for (key, value) in [
            ("ingest.produce_timeout_ms", self.ingest.produce_timeout_ms),
            ("ingest.max_body_bytes", self.ingest.max_body_bytes),
            ("processor.commit_interval_ms", self.processor.commit_interval_ms),
            ("processor.commit_max_records", self.processor.commit_max_records as u64),
            ("processor.offsets_refresh_ms", self.processor.offsets_refresh_ms),
            ("processor.block_cache_mb", self.processor.block_cache_mb as u64),
            ("processor.write_buffer_mb", self.processor.write_buffer_mb as u64),
            ("processor.num_stream_threads", self.processor.num_stream_threads as u64),
            ("sink.batch_size", self.sink.batch_size as u64),
            ("sink.retry_initial_ms", self.sink.retry_initial_ms),
            ("mysql.pool_max", self.mysql.pool_max as u64),
        ] {
            if value == 0 {
                return bad(key, "must be greater than 0".into());
            }
        }
        if self.processor.commit_min_interval_ms > self.processor.commit_interval_ms {
            return bad(
                "processor.commit_min_interval_ms",
                "must not exceed processor.commit_interval_ms".into(),
            );
        }
        if self.processor.transaction_timeout_ms < 7_000 {
            return bad(
                "processor.transaction_timeout_ms",
                "must be at least 7000 (it must exceed message.timeout.ms)".into(),
            );
        }
        if self.sink.retry_max_ms < self.sink.retry_initial_ms {
            return bad("sink.retry_max_ms", "must not be below sink.retry_initial_ms".into());
        }
        if !self.mysql.url.starts_with("mysql://") {
            return bad("mysql.url", "must start with mysql://".into());
        }
        Ok(())
    }

    /// Reads the topology file named by `topology_file`.
    pub fn topology(&self) -> Result<TopologyDefinition, ConfigError> {
        let path = &self.topology_file;
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        TopologyDefinition::from_toml(&text).map_err(|source| ConfigError::Topology {
            path: path.clone(),
            source,
        })
    }
}
