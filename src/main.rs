//! The `creditstream` command line.

use clap::{Parser, Subcommand, ValueEnum};
use creditstream::app::{self, AppError};
use creditstream::config::{Config, LogFormat};
use creditstream::inspect;
use creditstream::runtime::admin;
use creditstream::shutdown;
use creditstream::sink;
use std::path::PathBuf;
use std::process::ExitCode;
use tracing::error;

/// mimalloc instead of glibc's malloc: the per-record path allocates (keys, encoded
/// values, librdkafka's copies), and glibc's free lists were ~17 % of the stream thread's
/// samples. The crate's `override` feature makes mimalloc the process's `malloc` too, so
/// librdkafka and RocksDB (C and C++) allocate from it as well; both measured in
/// docs/benchmarks.md ("Allocator", "mimalloc for the C and C++ libraries too").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// What the processor holds, read-only, as JSON: a user, an order's decision, or a
    /// partition's users or counts. Reads the stores under processor.state_dir without
    /// disturbing a running replica, or the changelog.
    State {
        /// Rebuild the state from the changelog instead of reading local stores.
        #[arg(long)]
        from_changelog: bool,
        #[command(subcommand)]
        query: StateQuery,
    },
    /// Check every invariant across the topics, the changelog and the tables; exit 1 on any violation.
    Verify {
        /// File of order ids the ingest acknowledged (one per line), checked to be on the orders topic.
        #[arg(long)]
        acknowledged: Option<PathBuf>,
    },
}

#[derive(Subcommand, Clone, Copy)]
enum StateQuery {
    /// A user's balance, row and version, from the partition that owns it.
    Get { uid: i64 },
    /// The decision a partition remembers for an order id.
    Order { order_id: i64 },
    /// Every user, one JSON line each.
    Dump {
        #[arg(long)]
        partition: Option<u32>,
    },
    /// Per-partition counts: users, deleted users, total balance, orders decided.
    Stats {
        #[arg(long)]
        partition: Option<u32>,
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
                let min_insync = topic
                    .min_insync_replicas
                    .map_or_else(|| "?".to_string(), |m| m.to_string());
                let survives = topic.brokers_it_survives().map_or_else(
                    || "unknown".to_string(),
                    |n| format!("writes go on with {n} broker(s) down"),
                );
                println!(
                    "{:<55} partitions={:<3} cleanup.policy={:<8} replicas={} min.insync.replicas={min_insync} ({survives}) {}",
                    topic.name,
                    topic.partitions,
                    topic.cleanup_policy,
                    topic.replication_factor,
                    if topic.created { "created" } else { "exists" }
                );
            }
            Ok(())
        }
        Command::State { from_changelog, query } => {
            let query = match query {
                StateQuery::Get { uid } => inspect::Query::User(uid),
                StateQuery::Order { order_id } => inspect::Query::Order(order_id),
                StateQuery::Dump { partition } => inspect::Query::Dump(partition),
                StateQuery::Stats { partition } => inspect::Query::Stats(partition),
            };
            tokio::task::spawn_blocking(move || {
                inspect::run(&config, &def, query, from_changelog, &mut std::io::stdout().lock())
            })
            .await
            .map_err(|_| AppError::Panicked)?
            .map_err(|e| AppError::Usage(e.to_string()))
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
