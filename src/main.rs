//! The `creditstream` command line.

use clap::{Parser, Subcommand, ValueEnum};
use creditstream::app::{self, AppError};
use creditstream::config::{Config, LogFormat};
use creditstream::runtime::admin;
use creditstream::shutdown;
use creditstream::sink;
use std::path::PathBuf;
use std::process::ExitCode;
use tracing::error;

#[derive(Parser)]
#[command(
    name = "creditstream",
    version,
    about = "A Kafka Streams-style stateful credit-check stream processor"
)]
struct Cli {
    /// Configuration file layered over config/default.toml (then CREDITSTREAM__SECTION__KEY variables).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Log format; overrides log.format.
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormatArg>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API (seed-compatible /order and /user, and /v1) and publish to Kafka.
    Ingest,
    /// Run a processor replica: consumer group member with RocksDB state and exactly-once decisions.
    Process,
    /// Run the Kafka-fed MySQL writer.
    Sink,
    /// Run ingest, processor and sink in one process (local use and demos).
    All,
    /// Create (or verify) the topology's topics on the broker.
    Topics {
        /// Print the topology the way Kafka Streams' Topology#describe() does, and touch nothing.
        #[arg(long)]
        describe: bool,
    },
    /// Create or migrate the MySQL tables (idempotent).
    Schema,
    /// Measure throughput, latency and resources against the raw pass-through peer (see scripts/bench.sh).
    Bench {
        /// Users created before the orders.
        #[arg(long, default_value_t = 100_000)]
        users: u64,
        /// Orders in the backlog that measures throughput.
        #[arg(long, default_value_t = 1_000_000)]
        orders: u64,
        /// Orders sent afterwards at half the measured throughput, for latency.
        #[arg(long, default_value_t = 50_000)]
        latency_orders: u64,
        /// Replica counts to measure (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "1,2")]
        replicas: Vec<u32>,
        /// Skip the at_least_once runs.
        #[arg(long)]
        exactly_once_only: bool,
        /// Skip the raw pass-through peer.
        #[arg(long)]
        no_passthrough: bool,
        /// Where to write the JSON results (a Markdown table goes beside it).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The benchmark's raw pass-through peer: orders topic → decisions topic, no logic.
    #[command(hide = true)]
    Passthrough,
    /// Check every invariant across the topics, the changelog and the tables; exit 1 on any violation.
    Verify {
        /// File of order ids the ingest acknowledged (one per line), checked to be on the orders topic.
        #[arg(long)]
        acknowledged: Option<PathBuf>,
    },
}

fn init_logging(config: &Config, format: Option<LogFormatArg>) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log.level));
    let json = match format {
        Some(LogFormatArg::Json) => true,
        Some(LogFormatArg::Text) => false,
        None => config.log.format == LogFormat::Json,
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run(cli: Cli, config: Config) -> Result<(), AppError> {
    let def = config.topology()?;
    let (trigger, _) = shutdown::channel();
    let signal_trigger = trigger.clone();
    tokio::spawn(async move {
        shutdown::os_signal().await;
        signal_trigger.trigger();
    });
    match cli.command {
        Command::Ingest => app::ingest(&config, def, &trigger).await,
        Command::Process => app::process(&config, def, &trigger, true).await,
        Command::Sink => app::sink(&config, def, &trigger, true).await,
        Command::All => app::all(&config, def, &trigger).await,
        Command::Topics { describe: true } => {
            print!("{}", def.describe());
            Ok(())
        }
        Command::Topics { describe: false } => {
            for topic in admin::ensure_topics(&config.kafka, &def).await? {
                println!(
                    "{:<55} partitions={:<3} cleanup.policy={:<8} {}",
                    topic.name,
                    topic.partitions,
                    topic.cleanup_policy,
                    if topic.created { "created" } else { "exists" }
                );
            }
            Ok(())
        }
        Command::Passthrough => {
            let (kafka, shutdown) = (config.kafka.clone(), trigger.subscribe());
            let interval = std::time::Duration::from_millis(config.processor.commit_interval_ms);
            tokio::task::spawn_blocking(move || {
                creditstream::runtime::passthrough::run(&kafka, &def, interval, shutdown)
            })
            .await
            .map_err(|_| AppError::Panicked)?
            .map_err(|e| AppError::Usage(e.to_string()))
        }
        Command::Bench {
            users,
            orders,
            latency_orders,
            replicas,
            exactly_once_only,
            no_passthrough,
            out,
        } => {
            use creditstream::topology::definition::ProcessingGuarantee;
            let mut guarantees = vec![ProcessingGuarantee::ExactlyOnceV2];
            if !exactly_once_only {
                guarantees.push(ProcessingGuarantee::AtLeastOnce);
            }
            let work_dir = std::env::temp_dir().join(format!("creditstream-bench-{}", std::process::id()));
            let opts = creditstream::bench::BenchOptions {
                users,
                orders,
                latency_orders,
                replicas,
                guarantees,
                passthrough: !no_passthrough,
                work_dir: work_dir.clone(),
            };
            let cfg = config.clone();
            let results = tokio::task::spawn_blocking(move || creditstream::bench::run(&cfg, &def, &opts))
                .await
                .map_err(|_| AppError::Panicked)?
                .map_err(|e| AppError::Usage(e.to_string()))?;
            let _ = std::fs::remove_dir_all(&work_dir);
            let table = creditstream::bench::markdown(&results);
            println!("{table}");
            if let Some(path) = out {
                let json = serde_json::to_string_pretty(&results).map_err(|e| AppError::Usage(e.to_string()))?;
                std::fs::write(&path, json).map_err(|e| AppError::Usage(format!("{}: {e}", path.display())))?;
                std::fs::write(path.with_extension("md"), &table)
                    .map_err(|e| AppError::Usage(format!("{}: {e}", path.display())))?;
            }
            if results.iter().all(|r| r.correct) {
                Ok(())
            } else {
                Err(AppError::Usage("a benchmark run failed its correctness check".into()))
            }
        }
        Command::Verify { acknowledged } => {
            let acked = match acknowledged {
                None => None,
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .map_err(|e| AppError::Usage(format!("{}: {e}", path.display())))?;
                    let ids: Result<Vec<i64>, _> = text
                        .lines()
                        .filter(|l| !l.trim().is_empty())
                        .map(|l| l.trim().parse::<i64>())
                        .collect();
                    Some(ids.map_err(|e| AppError::Usage(format!("{}: {e}", path.display())))?)
                }
            };
            let report = creditstream::verify::verify(&config, &def, acked)
                .await
                .map_err(|e| AppError::Usage(e.to_string()))?;
            println!(
                "orders {}  decisions {} (answered 503 but decided: {})  user changes {}  undecodable {}  violations {}",
                report.orders,
                report.decisions,
                report.decided_unacknowledged,
                report.user_changes,
                report.undecodable,
                report.violations.len()
            );
            for v in &report.violations {
                println!("VIOLATION [{}] {}", v.invariant, v.detail);
            }
            if report.violations.is_empty() {
                Ok(())
            } else {
                Err(AppError::Usage(format!(
                    "{} invariant violations",
                    report.violations.len()
                )))
            }
        }
        Command::Schema => {
            let pool = sink::pool(&config.mysql)?;
            let version = sink::schema::apply(&pool).await?;
            let _ = pool.disconnect().await;
            println!("schema at version {version}");
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("creditstream: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config, cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("creditstream: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %e, "creditstream failed");
            eprintln!("creditstream: {e}");
            ExitCode::FAILURE
        }
    }
}
