//! The benchmark's errors. A failure inside one repetition is recorded in that
//! repetition's result; these stop a section or the whole run.

use creditstream::runtime::admin::AdminError;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("report JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Setup(String),
}
