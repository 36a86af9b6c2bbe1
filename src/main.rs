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

#[derive(clap::Args)]
struct BenchArgs {
    /// Users created before the orders.
    #[arg(long, default_value_t = 100_000)]
    users: u64,
    /// Orders in the backlog that measures throughput.
    #[arg(long, default_value_t = 1_000_000)]
    orders: u64,
    /// Orders sent afterwards at a fixed rate, for latency.
    #[arg(long, default_value_t = 50_000)]
    latency_orders: u64,
    /// Rate of the latency orders per second (default: half the measured throughput).
    #[arg(long)]
    latency_rate: Option<u64>,
    /// Order uids: uniform, zipf (exponent 1) or zipf:<exponent>.
    #[arg(long, default_value = "uniform")]
    uids: creditstream::bench::uids::UidDistribution,
    /// Replica counts to measure (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    replicas: Vec<u32>,
    /// Skip the at_least_once runs.
    #[arg(long)]
    exactly_once_only: bool,
    /// Skip the raw pass-through peer.
    #[arg(long)]
    no_passthrough: bool,
    /// Java classpath of the Kafka Streams peer (built by scripts/bench.sh); without it that peer is skipped.
    #[arg(long)]
    kafka_streams_classpath: Option<String>,
    /// User counts of the scaling runs (comma-separated; empty skips them).
    #[arg(long, value_delimiter = ',', default_value = "")]
    scaling_users: Vec<String>,
    /// Orders of the sink-against-loader run (0 skips it).
    #[arg(long, default_value_t = 100_000)]
    sink_orders: u64,
    /// Seconds of each wrk run against the ingest and the 202-only route (0 skips them).
    #[arg(long, default_value_t = 10)]
    ingest_seconds: u64,
    /// Names the run in the report (scripts/bench.sh passes the commit).
    #[arg(long, default_value = "unlabelled")]
    label: String,
    /// Where to write the JSON report (a Markdown table goes beside it).
    #[arg(long)]
    out: Option<PathBuf>,
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
    /// Measure creditstream against Kafka Streams, the raw pass-through, a plain loader and the HTTP ceiling (see scripts/bench.sh).
    Bench(Box<BenchArgs>),
    /// The benchmark's raw pass-through peer: orders topic → decisions topic, no logic.
    #[command(hide = true)]
    Passthrough,
    /// The benchmark's HTTP ceiling: POST /v1/orders answered 202, nothing else.
    #[command(hide = true)]
    HttpCeiling {
        #[arg(long)]
        listen: std::net::SocketAddr,
    },
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
            let (kafka, cfg, shutdown) = (config.kafka.clone(), config.processor.clone(), trigger.subscribe());
            tokio::task::spawn_blocking(move || creditstream::bench::passthrough::run(kafka, cfg, &def, shutdown))
                .await
                .map_err(|_| AppError::Panicked)?
                .map_err(AppError::from)
        }
        Command::Bench(args) => bench(*args, config, def).await,
        Command::HttpCeiling { listen } => {
            creditstream::ingest::ceiling::run(listen, trigger.subscribe()).await?;
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

async fn bench(
    args: BenchArgs,
    config: Config,
    def: creditstream::topology::definition::TopologyDefinition,
) -> Result<(), AppError> {
    use creditstream::bench::{ingest, BenchOptions, Peer};
    use creditstream::topology::definition::ProcessingGuarantee;
    let mut guarantees = vec![ProcessingGuarantee::ExactlyOnceV2];
    if !args.exactly_once_only {
        guarantees.push(ProcessingGuarantee::AtLeastOnce);
    }
    let mut skipped = Vec::new();
    let mut peers = Vec::new();
    match &args.kafka_streams_classpath {
        Some(_) => peers.push(Peer::KafkaStreams),
        None => skipped.push("the Kafka Streams peer (no --kafka-streams-classpath)".to_string()),
    }
    if !args.no_passthrough {
        peers.push(Peer::Passthrough);
    }
    let scaling_users = args
        .scaling_users
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<u64>()
                .map_err(|e| AppError::Usage(format!("--scaling-users {s}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let wrk = ingest::find_wrk();
    let mut ingest_seconds = args.ingest_seconds;
    if ingest_seconds > 0 && wrk.is_none() {
        skipped.push("the ingest run (wrk is not installed)".to_string());
        ingest_seconds = 0;
    }
    let work_dir = std::env::temp_dir().join(format!("creditstream-bench-{}", std::process::id()));
    let opts = BenchOptions {
        users: args.users,
        orders: args.orders,
        latency_orders: args.latency_orders,
        latency_rate: args.latency_rate,
        uids: args.uids,
        replicas: args.replicas,
        guarantees,
        peers,
        kafka_streams_classpath: args.kafka_streams_classpath,
        scaling_users,
        sink_orders: args.sink_orders,
        ingest_seconds,
        wrk,
        work_dir: work_dir.clone(),
        label: args.label,
    };
    let mut report = tokio::task::spawn_blocking(move || creditstream::bench::run(&config, &def, &opts))
        .await
        .map_err(|_| AppError::Panicked)?
        .map_err(|e| AppError::Usage(e.to_string()))?;
    report.skipped = skipped;
    let _ = std::fs::remove_dir_all(&work_dir);
    let table = report.markdown();
    println!("{table}");
    if let Some(path) = args.out {
        let json = serde_json::to_string_pretty(&report).map_err(|e| AppError::Usage(e.to_string()))?;
        std::fs::write(&path, json).map_err(|e| AppError::Usage(format!("{}: {e}", path.display())))?;
        std::fs::write(path.with_extension("md"), &table)
            .map_err(|e| AppError::Usage(format!("{}: {e}", path.display())))?;
    }
    if report.correct() {
        Ok(())
    } else {
        Err(AppError::Usage("a benchmark run failed its correctness check".into()))
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
