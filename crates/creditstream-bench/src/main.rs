//! The `creditstream-bench` command line: `run` the benchmark, measure membership
//! changes with large state (`elastic`), rewrite docs/benchmarks.md's sections from reports
//! (`docs`), and the two processes the benchmark starts of its own (`passthrough`,
//! `http-ceiling`).

use clap::{Parser, Subcommand};
use creditstream::config::Config;
use creditstream::shutdown;
use creditstream::topology::definition::ProcessingGuarantee;
use creditstream_bench::elastic::{self, ElasticOptions};
use creditstream_bench::options::{LatencyOptions, PeerSetup, PeerThreads};
use creditstream_bench::passthrough::{self, MatchedPassThrough, Templates};
use creditstream_bench::uids::UidDistribution;
use creditstream_bench::{ceiling, elastic_report, ingest, markdown, page, schedule, BenchOptions, Cadence, System};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The allocator `creditstream` ships with, so the pass-through (the workload-matched
/// limit, run from this binary) is measured with it too.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "creditstream-bench",
    about = "creditstream against a tuned Kafka Streams peer and a workload-matched pass-through (see scripts/bench.sh)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Users created before the orders.
    #[arg(long, default_value_t = 100_000)]
    users: u64,
    /// Orders in each throughput run's backlog.
    #[arg(long, default_value_t = 1_000_000)]
    orders: u64,
    /// Order uids: uniform, zipf (exponent 1) or zipf:<exponent>.
    #[arg(long, default_value = "uniform")]
    uids: UidDistribution,
    /// Repetitions of every configuration, interleaved (A B C A B C ...).
    #[arg(long, default_value_t = 5)]
    repetitions: u32,
    /// Guarantees (comma-separated): exactly_once_v2, at_least_once.
    #[arg(long, value_delimiter = ',', default_value = "exactly_once_v2,at_least_once")]
    guarantees: Vec<String>,
    /// Commit cadences (comma-separated): 100ms, backlog.
    #[arg(long, value_delimiter = ',', default_value = "100ms,backlog")]
    cadences: Vec<String>,
    /// Systems (comma-separated): creditstream, kafka_streams, passthrough.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "creditstream,kafka_streams,passthrough"
    )]
    systems: Vec<String>,
    /// Replica counts (comma-separated); more than 1 only with pinned cores to spare.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    replicas: Vec<u32>,
    /// Cores pinned to each replica when more than one runs.
    #[arg(long, default_value_t = 2)]
    cores_per_replica: u32,
    /// Cores left to the broker and the load generator when replicas are pinned.
    #[arg(long, default_value_t = 2)]
    reserved_cores: u32,
    /// Java classpath of the Kafka Streams peer (built by scripts/bench.sh); without it that peer is skipped.
    #[arg(long)]
    kafka_streams_classpath: Option<String>,
    /// The peer's stream threads: auto (measure 1 against 2 first) or a number.
    #[arg(long, default_value = "auto")]
    kafka_streams_threads: String,
    /// The peer's JVM heap (-Xms and -Xmx), MiB.
    #[arg(long, default_value_t = 2048)]
    kafka_streams_heap_mb: u64,
    /// The peer's producer linger.ms: 50 suits its throughput; Kafka's own default, 5 (also
    /// creditstream's), suits at_least_once latency, where records wait out the linger.
    #[arg(long, default_value_t = 50)]
    kafka_streams_linger_ms: u64,
    /// Orders of each run of the peer's thread probe.
    #[arg(long, default_value_t = 200_000)]
    thread_probe_orders: u64,
    /// Orders of each run of creditstream's stream-thread probe, 1 thread against 2,
    /// --repetitions times each (0 skips it).
    #[arg(long, default_value_t = 200_000)]
    stream_thread_probe_orders: u64,
    /// Seconds measured at each latency rate (0 skips the latency runs).
    #[arg(long, default_value_t = 60)]
    latency_seconds: u64,
    /// Seconds sent at each latency rate before its measured window.
    #[arg(long, default_value_t = 10)]
    latency_warmup_seconds: u64,
    /// Latency rates as shares of Kafka Streams' median maximum (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "0.25,0.5,0.75")]
    latency_shares: Vec<f64>,
    /// Latency rates in orders/s (comma-separated); replaces --latency-shares.
    #[arg(long, value_delimiter = ',')]
    latency_rates: Vec<u64>,
    /// Guarantees of the latency runs (comma-separated; default: those of --guarantees).
    #[arg(long, value_delimiter = ',')]
    latency_guarantees: Vec<String>,
    /// User counts of the scaling runs (comma-separated; empty skips them).
    #[arg(long, value_delimiter = ',', default_value = "")]
    scaling_users: Vec<String>,
    /// Orders of the sink-against-loader run (0 skips it).
    #[arg(long, default_value_t = 100_000)]
    sink_orders: u64,
    /// Seconds of each wrk run against the ingest and the 202-only route (0 skips them).
    #[arg(long, default_value_t = 10)]
    ingest_seconds: u64,
    /// wrk for the ingest run: auto (found on PATH), none (skipped, as on a machine
    /// without it) or its path.
    #[arg(long, default_value = "auto")]
    wrk: String,
    /// The creditstream binary (default: beside this one).
    #[arg(long)]
    creditstream_bin: Option<PathBuf>,
    /// Names the run in the report (scripts/bench.sh passes the commit).
    #[arg(long, default_value = "unlabelled")]
    label: String,
    /// Where to write the JSON report (a Markdown file goes beside it); never overwritten.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ElasticArgs {
    #[command(flatten)]
    run: RunArgs,
    /// User counts whose restore is measured (comma-separated; empty skips them).
    #[arg(long, value_delimiter = ',', default_value = "1000000,10000000")]
    restore_users: Vec<String>,
    /// User count of the failover and join runs (0 skips them).
    #[arg(long, default_value_t = 1_000_000)]
    failover_users: u64,
    /// User counts of the throughput runs (comma-separated; empty skips them).
    #[arg(long, value_delimiter = ',', default_value = "10000,10000000")]
    throughput_users: Vec<String>,
    /// Orders per second of the steady load during failovers.
    #[arg(long, default_value_t = 1000)]
    order_rate: u64,
}

#[derive(Subcommand)]
enum Command {
    /// Run the benchmark against the broker and database of the creditstream configuration.
    Run(Box<RunArgs>),
    /// Restore, failover and joins with large state, and throughput by user count
    /// (its own report; `--orders` sizes the throughput runs).
    Elastic(Box<ElasticArgs>),
    /// Rewrite the benchmark page's section between <!-- bench:begin --> and <!-- bench:end -->
    /// from a report.
    Docs {
        /// The report (default: the newest creditstream-bench/2 report in --results).
        #[arg(long)]
        report: Option<PathBuf>,
        #[arg(long, default_value = "benches/results")]
        results: PathBuf,
        #[arg(long, default_value = "docs/benchmarks.md")]
        page: PathBuf,
        /// Rewrite the elasticity section from this `elastic` report instead.
        #[arg(long)]
        elastic_report: Option<PathBuf>,
    },
    /// The workload-matched pass-through (started by `run`).
    #[command(hide = true)]
    Passthrough {
        #[arg(long)]
        users: u64,
        #[arg(long)]
        orders: u64,
        #[arg(long)]
        completed: u64,
    },
    /// The HTTP ceiling: POST /v1/orders answered 202, nothing else (started by `run`).
    #[command(hide = true)]
    HttpCeiling {
        #[arg(long)]
        listen: std::net::SocketAddr,
    },
}

fn parse_list<T>(values: &[String], what: &str, parse: impl Fn(&str) -> Result<T, String>) -> Result<Vec<T>, String> {
    values
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| parse(s).map_err(|e| format!("--{what}: {e}")))
        .collect()
}

fn guarantee(s: &str) -> Result<ProcessingGuarantee, String> {
    match s {
        "exactly_once_v2" => Ok(ProcessingGuarantee::ExactlyOnceV2),
        "at_least_once" => Ok(ProcessingGuarantee::AtLeastOnce),
        _ => Err(format!("expected exactly_once_v2 or at_least_once, got {s:?}")),
    }
}

fn system(s: &str) -> Result<System, String> {
    match s {
        "creditstream" => Ok(System::Creditstream),
        "kafka_streams" => Ok(System::KafkaStreams),
        "passthrough" => Ok(System::Passthrough),
        _ => Err(format!(
            "expected creditstream, kafka_streams or passthrough, got {s:?}"
        )),
    }
}

fn options(args: RunArgs, skipped: &mut Vec<String>) -> Result<BenchOptions, String> {
    let bench_bin = std::env::current_exe().map_err(|e| e.to_string())?;
    let creditstream_bin = args
        .creditstream_bin
        .unwrap_or_else(|| bench_bin.with_file_name("creditstream"));
    if !creditstream_bin.is_file() {
        return Err(format!(
            "{} not found: build it (cargo build --release --bins --workspace) or pass --creditstream-bin",
            creditstream_bin.display()
        ));
    }
    let mut systems = parse_list(&args.systems, "systems", system)?;
    if !systems.contains(&System::Creditstream) {
        systems.insert(0, System::Creditstream);
    }
    let threads = match args.kafka_streams_threads.as_str() {
        "auto" => PeerThreads::Auto,
        n => PeerThreads::Fixed(n.parse().map_err(|_| format!("--kafka-streams-threads: {n:?}"))?),
    };
    let peer = args.kafka_streams_classpath.map(|classpath| PeerSetup {
        classpath,
        threads,
        heap_mb: args.kafka_streams_heap_mb,
        linger_ms: args.kafka_streams_linger_ms,
        probe_orders: args.thread_probe_orders,
    });
    if peer.is_none() && systems.contains(&System::KafkaStreams) {
        systems.retain(|s| *s != System::KafkaStreams);
        skipped.push("the Kafka Streams peer (no --kafka-streams-classpath)".into());
    }
    let wrk = match args.wrk.as_str() {
        "auto" => ingest::find_wrk(),
        "none" => None,
        path => Some(PathBuf::from(path)).filter(|p| p.is_file()),
    };
    let mut ingest_seconds = args.ingest_seconds;
    if ingest_seconds > 0 && wrk.is_none() {
        let why = match args.wrk.as_str() {
            "auto" => "wrk is not installed".to_string(),
            "none" => "--wrk none".to_string(),
            path => format!("wrk not found at {path}"),
        };
        skipped.push(format!("the ingest run ({why})"));
        ingest_seconds = 0;
    }
    let latency = (args.latency_seconds > 0).then_some(LatencyOptions {
        seconds: args.latency_seconds,
        warmup_seconds: args.latency_warmup_seconds,
        shares: args.latency_shares,
        rates: args.latency_rates,
        guarantees: parse_list(&args.latency_guarantees, "latency-guarantees", guarantee)?,
    });
    if latency.is_none() {
        skipped.push("the latency runs (--latency-seconds 0)".into());
    }
    if let Some(out) = &args.out {
        if out.exists() {
            return Err(format!("{} exists; every run keeps its own report", out.display()));
        }
    }
    Ok(BenchOptions {
        users: args.users,
        orders: args.orders.max(2),
        uids: args.uids,
        repetitions: args.repetitions.max(1),
        stream_thread_probe_orders: args.stream_thread_probe_orders,
        guarantees: parse_list(&args.guarantees, "guarantees", guarantee)?,
        cadences: parse_list(&args.cadences, "cadences", Cadence::parse)?,
        systems,
        replicas: args.replicas,
        cores_per_replica: args.cores_per_replica.max(1),
        reserved_cores: args.reserved_cores,
        peer,
        latency,
        scaling_users: parse_list(&args.scaling_users, "scaling-users", |s| {
            s.parse::<u64>().map_err(|e| e.to_string())
        })?,
        sink_orders: args.sink_orders,
        ingest_seconds,
        wrk,
        creditstream_bin,
        bench_bin,
        work_dir: std::env::temp_dir().join(format!("creditstream-bench-{}", std::process::id())),
        label: args.label,
        out: args.out,
    })
}

async fn run(args: RunArgs, config: Config) -> Result<bool, String> {
    let def = config.topology().map_err(|e| e.to_string())?;
    let mut skipped = Vec::new();
    let opts = options(args, &mut skipped)?;
    let work_dir = opts.work_dir.clone();
    let out = opts.out.clone();
    let report = tokio::task::spawn_blocking(move || schedule::run(&config, &def, &opts, skipped))
        .await
        .map_err(|_| "the benchmark thread panicked".to_string())?
        .map_err(|e| e.to_string())?;
    publish(&work_dir, out.as_deref(), |source| markdown::render(&report, source))?;
    Ok(report.correct())
}

/// After a run: its scratch folder removed, its Markdown printed and written beside the
/// JSON report `out` (which names itself in the text).
fn publish(work_dir: &Path, out: Option<&Path>, render: impl FnOnce(&str) -> String) -> Result<(), String> {
    let _ = std::fs::remove_dir_all(work_dir);
    let source = out
        .and_then(|p| p.file_name())
        .map_or_else(|| "not saved".to_string(), |n| n.to_string_lossy().into_owned());
    let text = render(&source);
    println!("{text}");
    if let Some(path) = out {
        std::fs::write(path.with_extension("md"), &text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

async fn elastic(args: ElasticArgs, config: Config) -> Result<bool, String> {
    let def = config.topology().map_err(|e| e.to_string())?;
    let users =
        |values: &[String], what: &str| parse_list(values, what, |s| s.parse::<u64>().map_err(|e| e.to_string()));
    let measures = ElasticOptions {
        restore_users: users(&args.restore_users, "restore-users")?,
        failover_users: args.failover_users,
        throughput_users: users(&args.throughput_users, "throughput-users")?,
        order_rate: args.order_rate.max(1),
    };
    let opts = options(args.run, &mut Vec::new())?;
    let (work_dir, out) = (opts.work_dir.clone(), opts.out.clone());
    let report = tokio::task::spawn_blocking(move || elastic::run(&config, &def, &opts, &measures))
        .await
        .map_err(|_| "the benchmark thread panicked".to_string())?
        .map_err(|e| e.to_string())?;
    publish(&work_dir, out.as_deref(), |source| {
        elastic_report::render(&report, source)
    })?;
    Ok(report.correct())
}

fn rewrite_elastic(report_path: PathBuf, page_path: PathBuf) -> Result<(), String> {
    let report = elastic_report::ElasticReport::load(&report_path)?;
    let source = report_path.display().to_string();
    let text = std::fs::read_to_string(&page_path).map_err(|e| format!("{}: {e}", page_path.display()))?;
    let section = elastic_report::render(&report, &source);
    let spliced =
        page::splice_between(&text, page::ELASTIC_BEGIN, page::ELASTIC_END, &section).map_err(|e| e.to_string())?;
    std::fs::write(&page_path, spliced).map_err(|e| format!("{}: {e}", page_path.display()))?;
    eprintln!(
        "docs: the elasticity section of {} rewritten from {source}",
        page_path.display()
    );
    Ok(())
}

fn rewrite_benchmarks(report: Option<PathBuf>, results: PathBuf, page_path: PathBuf) -> Result<(), String> {
    let (path, report) = match report {
        Some(path) => {
            let report = creditstream_bench::BenchReport::load(&path)?;
            (path, report)
        }
        None => page::latest_report(&results)?,
    };
    let source = path.display().to_string();
    let text = std::fs::read_to_string(&page_path).map_err(|e| format!("{}: {e}", page_path.display()))?;
    let spliced = page::splice(&text, &markdown::render(&report, &source)).map_err(|e| e.to_string())?;
    std::fs::write(&page_path, spliced).map_err(|e| format!("{}: {e}", page_path.display()))?;
    eprintln!("docs: {} rewritten from {source}", page_path.display());
    Ok(())
}

async fn serve_passthrough(config: Config, users: u64, orders: u64, completed: u64) -> Result<(), String> {
    let def = config.topology().map_err(|e| e.to_string())?;
    let (trigger, _) = shutdown::channel();
    let on_signal = trigger.clone();
    tokio::spawn(async move {
        shutdown::os_signal().await;
        on_signal.trigger();
    });
    let listen: std::net::SocketAddr = config
        .processor
        .metrics_listen
        .parse()
        .map_err(|_| format!("{} is not an address", config.processor.metrics_listen))?;
    let metrics_shutdown = trigger.subscribe();
    let metrics = tokio::spawn(async move { creditstream::metrics::serve(listen, metrics_shutdown.wait()).await });
    let processor = MatchedPassThrough::new(
        Templates::new(users, orders, creditstream_bench::load::now_ms()),
        orders,
        completed,
    );
    let (kafka, cfg, stop) = (config.kafka.clone(), config.processor.clone(), trigger.subscribe());
    let result = tokio::task::spawn_blocking(move || passthrough::run(kafka, cfg, &def, processor, stop)).await;
    trigger.trigger();
    let _ = metrics.await;
    result
        .map_err(|_| "the pass-through thread panicked".to_string())?
        .map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("creditstream-bench: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let config = || Config::load(None).map_err(|e| format!("configuration error: {e}"));
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => {
                let passed = run(*args, config()?).await?;
                if passed {
                    Ok(())
                } else {
                    Err("a benchmark repetition failed its checks (see the report)".to_string())
                }
            }
            Command::Elastic(args) => {
                if elastic(*args, config()?).await? {
                    Ok(())
                } else {
                    Err("an elasticity repetition failed its checks (see the report)".to_string())
                }
            }
            Command::Docs {
                elastic_report: Some(report),
                page,
                ..
            } => rewrite_elastic(report, page),
            Command::Docs {
                report,
                results,
                page,
                elastic_report: None,
            } => rewrite_benchmarks(report, results, page),
            Command::Passthrough {
                users,
                orders,
                completed,
            } => serve_passthrough(config()?, users, orders, completed).await,
            Command::HttpCeiling { listen } => {
                let (trigger, _) = shutdown::channel();
                let on_signal = trigger.clone();
                tokio::spawn(async move {
                    shutdown::os_signal().await;
                    on_signal.trigger();
                });
                ceiling::run(listen, trigger.subscribe())
                    .await
                    .map_err(|e| e.to_string())
            }
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("creditstream-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
