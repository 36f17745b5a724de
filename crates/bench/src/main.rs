//! `audit-bench`: Data Storage against raw PostgreSQL, measured in one run on this machine.
//!
//! Every figure is a ratio against a baseline taken in the same run, because the machines are
//! shared and noisy. Each scenario gets a fresh database, and each checks afterwards that every
//! event it counted as written is in the database.

mod baseline;
mod collector;
mod conn;
mod db;
mod dlq;
mod load;
mod retention;
mod review;
mod scale;
mod server;
mod witness;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use clap::Parser;

use baseline::Method;
use db::BenchDb;
use load::{Latency, LoadResult, Shape};
use server::Server;

#[derive(Parser, Debug)]
#[command(
    name = "audit-bench",
    about = "Benchmark Data Storage against raw PostgreSQL in one run"
)]
struct Args {
    /// PostgreSQL server (no database part; a fresh database is made per scenario).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    pg: String,
    /// The datastorage binary (default: next to this one).
    #[arg(long)]
    datastorage: Option<PathBuf>,
    /// Concurrent clients / connections (C).
    #[arg(long, default_value_t = 50)]
    clients: usize,
    /// Events per batch (B).
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Duration of each timed scenario (D).
    #[arg(long, default_value = "10s")]
    duration: humantime::Duration,
    /// Rate of the open-loop scenario, single events per second (R).
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Rate of the open-loop reads on the large log, queries or proofs per second (Q).
    #[arg(long, default_value_t = 100)]
    read_rate: u64,
    /// Events in the log of the query scenario (j).
    #[arg(long, default_value_t = 1_000_000)]
    log_events: u64,
    /// Also run the DLQ scenarios (writes while PostgreSQL is down, and a drain).
    #[arg(long)]
    dlq: bool,
    /// Run only the DLQ scenarios.
    #[arg(long)]
    dlq_only: bool,
    /// Run only the authentication and TLS scenarios (n1)-(n4).
    #[arg(long)]
    auth_only: bool,
    /// Run only the witness scenarios (w1)-(w4) (needs `audit-witness` built beside this).
    #[arg(long)]
    witness_only: bool,
    /// Run only the trace export scenarios (o1)-(o3): single events with traces off, exported
    /// with 1 % sampling, and with every trace exported.
    #[arg(long)]
    traces_only: bool,
    /// With --traces-only: also run (o0), single events on this other `datastorage` binary (an
    /// earlier build), in the same turns. With --query-only: also time this binary's verifier
    /// on the same log, in turns with this build's.
    #[arg(long)]
    baseline_bin: Option<PathBuf>,
    /// Run only the reads on the large log: (j) queries, (l) proofs, (t) the timeline of a
    /// remediation of `--remediation-events`, the tree build and the verifier.
    #[arg(long)]
    query_only: bool,
    /// Run only the scale scenarios (s1)-(s7) on a log of `--scale-events` (building a 10 M
    /// log takes several minutes and tens of GB of disk): ingest on it against a fresh log,
    /// queries, proofs and the timeline on it, the streamed export's rate, the verifier's rate,
    /// and bytes on disk per event against a plain table with the same indexes.
    #[arg(long)]
    scale: bool,
    /// Events of the log of the scale run.
    #[arg(long, default_value_t = 10_000_000)]
    scale_events: u64,
    /// With --scale: keep the large log's database afterwards (its URL and the checkpoints'
    /// public key are printed), to profile reads on it.
    #[arg(long)]
    keep_log: bool,
    /// Run only the retention scenarios (r1)-(r3): single events at `--rate` while nothing is
    /// purged, while a month of `--retention-events` expired events is dropped whole, and while
    /// as many are purged row by row (a month with one held event); the purges' times and the
    /// content's bytes on disk before and after each. Writing the log takes a few minutes.
    #[arg(long)]
    retention_only: bool,
    /// Expired events of each month of the retention run.
    #[arg(long, default_value_t = 1_000_000)]
    retention_events: u64,
    /// Events of the one large remediation in the log of (j) whose timeline (t) draws.
    #[arg(long, default_value_t = 10_000)]
    remediation_events: u64,
    /// Events queued in the DLQ before the drain is timed.
    #[arg(long, default_value_t = 100_000)]
    drain_events: u64,
    /// A few seconds with tiny sizes: checks that every figure is produced, not how fast.
    #[arg(long)]
    smoke: bool,
    /// Only load an already running Data Storage at this URL (for profiling), then exit.
    #[arg(long)]
    against: Option<String>,
    /// With --against: send batches of B events instead of single events.
    #[arg(long)]
    batches: bool,
}

/// Whether `body` contains `part`.
fn contains(body: &[u8], part: &[u8]) -> bool {
    body.windows(part.len()).any(|w| w == part)
}

/// The ratios printed under the table: (numerator, denominator, what it says). Each is printed
/// when the run measured both rows.
const RATIOS: [(&str, &str, &str); 14] = [
    (
        "(s2)",
        "(s1)",
        " (single events on the large log over a fresh one; target at least 0.90)",
    ),
    (
        "(s4)",
        "(s3)",
        " (batches on the large log over a fresh one; target at least 0.90)",
    ),
    ("(d)", "(a)", ""),
    ("(d)", "(e)", ""),
    ("(f)", "(c)", ""),
    (
        "(d)",
        "(k)",
        " (single-event ingest with tree maintenance and checkpoints over without)",
    ),
    (
        "(m)",
        "(m1)",
        " (single events through two replicas on one log over one replica)",
    ),
    (
        "(o2)",
        "(o1)",
        " (single events with traces exported at 1 % sampling over traces off)",
    ),
    (
        "(o3)",
        "(o1)",
        " (single events with every trace exported over traces off)",
    ),
    (
        "(o1)",
        "(o0)",
        " (single events, traces off, this build over the baseline binary)",
    ),
    (
        "(n2)",
        "(n1)",
        " (single events with a static token over none)",
    ),
    (
        "(n3)",
        "(n1)",
        " (single events with a ServiceAccount token, review cached, over none)",
    ),
    (
        "(n4)",
        "(n2)",
        " (single events with a static token over TLS, over the same in plain text)",
    ),
    (
        "(w2)",
        "(w1)",
        " (single events with a 2-of-3 witness policy over none)",
    ),
];

/// One line of the table.
struct Row {
    name: &'static str,
    result: LoadResult,
    server_cpu: Option<f64>,
    latency: Option<Latency>,
    /// Peak RSS of the service process by the end of the scenario (MiB).
    rss: Option<f64>,
}

struct Bench {
    args: Args,
    bin: PathBuf,
    rows: Vec<Row>,
    dlq: Vec<dlq::DlqFigures>,
    peak_rss: f64,
    /// From the start of a service on the filled log until a checkpoint covers all of it.
    tree_build: Option<(Duration, f64)>,
    /// `datastorage verify` over the filled log.
    verifier: Option<Duration>,
    /// This build's verifier and `--baseline-bin`'s on the same log (the faster of two turns).
    verifier_against_baseline: Option<(Duration, Duration)>,
    /// (w3) wait p50, p99 (ms) and samples; (w4) cosignatures per second and in all.
    witness_figures: Option<(f64, f64, usize, f64, u64)>,
    scale_figures: Option<ScaleFigures>,
    retention_figures: Option<RetentionFigures>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if args.smoke {
        args.shrink_for_smoke();
    }
    if let Some(base) = args.against.clone() {
        return load_running_service(&base, &args).await;
    }
    let bin = args
        .datastorage
        .clone()
        .unwrap_or_else(server::default_binary);
    ensure!(
        bin.exists(),
        "{} not found: run `cargo build --release` first",
        bin.display()
    );
    println!(
        "audit-bench: C={} B={} D={:?} R={}/s Q={}/s log={} (datastorage: {})",
        args.clients,
        args.batch,
        Duration::from(args.duration),
        args.rate,
        args.read_rate,
        if args.scale {
            args.scale_events
        } else {
            args.log_events
        },
        bin.display()
    );
    if let Some(settings) = db::settings(&args.pg).await {
        println!("audit-bench: PostgreSQL at {}: {settings}", args.pg);
    }
    let mut bench = Bench {
        args,
        bin,
        rows: Vec::new(),
        dlq: Vec::new(),
        peak_rss: 0.0,
        tree_build: None,
        verifier: None,
        verifier_against_baseline: None,
        witness_figures: None,
        scale_figures: None,
        retention_figures: None,
    };
    bench.run().await?;
    bench.print()
}

impl Args {
    /// Tiny sizes: every scenario runs in seconds (the test suite's run).
    fn shrink_for_smoke(&mut self) {
        self.clients = 4;
        self.batch = 20;
        self.duration = Duration::from_millis(500).into();
        self.rate = 50;
        self.log_events = 2_000;
        self.scale_events = 4_000;
        self.retention_events = 2_000;
        self.drain_events = 2_000;
    }
}

/// `--against URL`: the closed loop alone, against a service already running (for profiling).
async fn load_running_service(base: &str, args: &Args) -> anyhow::Result<()> {
    let shape = if args.batches {
        Shape::Batch(args.batch)
    } else {
        Shape::Single
    };
    let r = load::closed_loop(base, args.clients, args.duration.into(), shape).await?;
    println!(
        "{:.0} events/s ({} events, {} errors)",
        r.rate(),
        r.events,
        r.errors
    );
    Ok(())
}

impl Bench {
    fn d(&self) -> Duration {
        self.args.duration.into()
    }

    async fn run(&mut self) -> anyhow::Result<()> {
        if self.args.auth_only {
            return self.authentication().await;
        }
        if self.args.witness_only {
            return self.witnesses().await;
        }
        if self.args.query_only {
            return self.query().await;
        }
        if self.args.scale {
            return self.scale().await;
        }
        if self.args.retention_only {
            return self.retention().await;
        }
        if self.args.traces_only {
            return self.traces().await;
        }
        if !self.args.dlq_only {
            self.run_main().await?;
        }
        if self.args.dlq || self.args.dlq_only {
            for backend in ["journal", "redis"] {
                let (c, d) = (self.args.clients, self.d());
                let f = dlq::run(
                    &self.args.pg,
                    &self.bin,
                    backend,
                    c,
                    d,
                    self.args.drain_events,
                )
                .await?;
                self.dlq.push(f);
            }
        }
        Ok(())
    }

    async fn run_main(&mut self) -> anyhow::Result<()> {
        let b = self.args.batch;
        // The two pairs whose ratios are targets are measured in turns (see `paired`).
        self.paired(
            ("(a) PostgreSQL, 1 INSERT per txn", Method::SingleInsert),
            ("(d) POST /events, group commit", Shape::Single),
        )
        .await?;
        self.baseline("(b) PostgreSQL, multi-row INSERT of B", Method::MultiRow)
            .await?;
        self.paired(
            ("(c) PostgreSQL, COPY of B", Method::Copy),
            ("(f) POST /events/batch, B per request", Shape::Batch(b)),
        )
        .await?;
        self.service(
            "(e) POST /events, batch size 1",
            &["--batch-max-events", "1"],
            Shape::Single,
            false,
        )
        .await?;
        self.open_loop().await?;
        self.service(
            "(h) POST /notifications (typed)",
            &[],
            Shape::Notification,
            false,
        )
        .await?;
        self.service(
            "(k) POST /events, checkpoints disabled",
            &["--checkpoints", "disabled"],
            Shape::Single,
            false,
        )
        .await?;
        self.replicas().await?;
        self.authentication().await?;
        self.traces().await?;
        self.service("(i) SQLite: POST /events", &[], Shape::Single, true)
            .await?;
        self.service("(i) SQLite: POST /events/batch", &[], Shape::Batch(b), true)
            .await?;
        self.query().await?;
        // Scenarios measured in turns come out of order.
        self.rows.sort_by_key(|r| r.name);
        Ok(())
    }

    /// A baseline straight to PostgreSQL, on a fresh database, for D.
    async fn baseline(&mut self, name: &'static str, method: Method) -> anyhow::Result<()> {
        let (c, b, d) = (self.args.clients, self.args.batch, self.d());
        let db = BenchDb::create(&self.args.pg, &self.bin).await?;
        let r = baseline::run(&db.url, method, c, b, d).await?;
        check_stored(&db, r.events).await?;
        db.drop_db().await?;
        self.rows.push(Row::baseline(name, r));
        Ok(())
    }

    /// A baseline and a Data Storage scenario whose ratio is a target, measured in [`TURNS`]
    /// alternating turns of D / TURNS each instead of one after the other: on a shared machine
    /// whose speed drifts over minutes, both then see the same phases, and the ratio does not
    /// depend on which one met a slow minute.
    async fn paired(
        &mut self,
        (baseline_name, method): (&'static str, Method),
        (service_name, shape): (&'static str, Shape),
    ) -> anyhow::Result<()> {
        let (c, b) = (self.args.clients, self.args.batch);
        let turn = self.d() / TURNS;
        let db = BenchDb::create(&self.args.pg, &self.bin).await?;
        let mut service = Scenario::start(&self.bin, &self.args.pg, &[], false).await?;
        let mut r = LoadResult::default();
        for _ in 0..TURNS {
            db::checkpoint(&self.args.pg).await;
            r.add(&baseline::run(&db.url, method, c, b, turn).await?);
            db::checkpoint(&self.args.pg).await;
            service.load(c, turn, shape).await?;
        }
        check_stored(&db, r.events).await?;
        db.drop_db().await?;
        self.rows.push(Row::baseline(baseline_name, r));
        let row = service.finish(service_name, &mut self.peak_rss).await?;
        self.rows.push(row);
        Ok(())
    }

    /// (n) Single events with authentication, in [`TURNS`] turns: (n1) none, (n2) a static
    /// token of the tokens file, (n3) a ServiceAccount token through the real Kubernetes
    /// authenticator against a stand-in API server (its reviews cached, as in a steady state).
    /// (o1)-(o3): the cost of trace export on single events, the three services measured in
    /// turns. The load sends no `traceparent`, so every request starts a trace that the
    /// service samples at its ratio.
    async fn traces(&mut self) -> anyhow::Result<()> {
        let (c, turn) = (self.args.clients, self.d() / TURNS);
        let (endpoint, received) = collector::start().await?;
        let pg = self.args.pg.clone();
        let mut off = Scenario::start(&self.bin, &pg, &[], false).await?;
        let sampled = ["--otlp-endpoint", &endpoint, "--trace-sample-ratio", "0.01"];
        let mut one_percent = Scenario::start(&self.bin, &pg, &sampled, false).await?;
        let all = ["--otlp-endpoint", &endpoint, "--trace-sample-ratio", "1"];
        let mut every = Scenario::start(&self.bin, &pg, &all, false).await?;
        let mut earlier = match &self.args.baseline_bin {
            Some(bin) => Some(Scenario::start(bin, &pg, &[], false).await?),
            None => None,
        };
        for _ in 0..TURNS {
            if let Some(earlier) = &mut earlier {
                earlier.load(c, turn, Shape::Single).await?;
            }
            off.load(c, turn, Shape::Single).await?;
            one_percent.load(c, turn, Shape::Single).await?;
            every.load(c, turn, Shape::Single).await?;
        }
        let mut scenarios = vec![
            (off, "(o1) POST /events, traces off"),
            (
                one_percent,
                "(o2) POST /events, traces exported, 1 % sampled",
            ),
            (every, "(o3) POST /events, traces exported, all sampled"),
        ];
        if let Some(earlier) = earlier {
            scenarios.push((earlier, "(o0) POST /events, the baseline binary"));
        }
        self.finish_all(scenarios).await?;
        let exports = received.exports.load(std::sync::atomic::Ordering::Relaxed);
        let bytes = received.bytes.load(std::sync::atomic::Ordering::Relaxed);
        ensure!(exports > 0, "no trace was exported");
        println!(
            "trace exports received: {exports} ({:.1} MB)",
            bytes as f64 / 1e6
        );
        Ok(())
    }

    async fn authentication(&mut self) -> anyhow::Result<()> {
        let (c, turn) = (self.args.clients, self.d() / TURNS);
        let dir = tempfile::tempdir()?;
        let tokens_file = dir.path().join("tokens.yaml");
        let tokens_arg = tokens_file.display().to_string();
        let out = tokio::process::Command::new(&self.bin)
            .args([
                "token",
                "create",
                "--principal",
                "bench",
                "--role",
                "writer",
            ])
            .args(["--tokens-file", &tokens_arg])
            .output()
            .await?;
        ensure!(out.status.success(), "token create failed");
        let token = String::from_utf8(out.stdout)?.trim().to_string();
        let kubeconfig = review::start(dir.path()).await?.display().to_string();
        let pg = self.args.pg.clone();
        let mut none = Scenario::start(&self.bin, &pg, &[], false).await?;
        let mut fixed =
            Scenario::start(&self.bin, &pg, &["--tokens-file", &tokens_arg], false).await?;
        let reviewed_args = ["--kubernetes-auth", "true", "--kubeconfig", &kubeconfig];
        let mut reviewed = Scenario::start(&self.bin, &pg, &reviewed_args, false).await?;
        let (tls_args, tls) = tls_files(dir.path())?;
        let mut tls_args: Vec<&str> = tls_args.iter().map(String::as_str).collect();
        tls_args.extend(["--tokens-file", &tokens_arg]);
        let mut encrypted = Scenario::start(&self.bin, &pg, &tls_args, false).await?;
        for _ in 0..TURNS {
            none.load_as(c, turn, Shape::Single, None, None).await?;
            fixed
                .load_as(c, turn, Shape::Single, Some(&token), None)
                .await?;
            reviewed
                .load_as(c, turn, Shape::Single, Some(review::TOKEN), None)
                .await?;
            encrypted
                .load_as(c, turn, Shape::Single, Some(&token), Some(&tls))
                .await?;
        }
        self.finish_all(vec![
            (none, "(n1) POST /events, no authentication"),
            (fixed, "(n2) POST /events, static token"),
            (
                reviewed,
                "(n3) POST /events, ServiceAccount token (cached review)",
            ),
            (encrypted, "(n4) POST /events, static token over TLS"),
        ])
        .await
    }

    /// Stops each scenario and adds its row; a scenario with a refused request fails the run.
    async fn finish_all(&mut self, scenarios: Vec<(Scenario, &'static str)>) -> anyhow::Result<()> {
        for (scenario, name) in scenarios {
            let row = scenario.finish(name, &mut self.peak_rss).await?;
            ensure!(
                row.result.errors == 0,
                "{name}: {} requests refused",
                row.result.errors
            );
            self.rows.push(row);
        }
        Ok(())
    }

    /// (w) Witnesses: (w1) single events without witnesses and (w2) with a 2-of-3 policy of
    /// `audit-witness` processes, in [`TURNS`] turns; (w3) the wait from commit to a witnessed
    /// checkpoint at R events/s; (w4) one witness's cosigning rate on one core.
    async fn witnesses(&mut self) -> anyhow::Result<()> {
        let (c, turn) = (self.args.clients, self.d() / TURNS);
        let dir = tempfile::tempdir()?;
        let (key_file, log_key) =
            witness::log_key(&self.bin, dir.path(), "bench.example/w2").await?;
        let (lag_key_file, lag_log_key) =
            witness::log_key(&self.bin, dir.path(), "bench.example/w3").await?;
        let mut processes = Vec::new();
        for i in 1..=3 {
            processes.push(
                witness::WitnessProcess::start(
                    &format!("w{i}.bench.example"),
                    &[log_key.clone(), lag_log_key.clone()],
                    false,
                )
                .await?,
            );
        }
        let entries = processes
            .iter()
            .map(|w| w.entry())
            .collect::<Vec<_>>()
            .join(",");
        let pg = self.args.pg.clone();
        let witnessed_args = |key: &Path| {
            vec![
                "--checkpoint-key-file".to_string(),
                key.display().to_string(),
                "--witnesses".to_string(),
                entries.clone(),
                "--witness-quorum".to_string(),
                "2".to_string(),
            ]
        };
        let w2_args = witnessed_args(&key_file);
        let w2_args: Vec<&str> = w2_args.iter().map(String::as_str).collect();
        let mut plain = Scenario::start(&self.bin, &pg, &[], false).await?;
        let mut witnessed = Scenario::start(&self.bin, &pg, &w2_args, false).await?;
        for _ in 0..TURNS {
            plain.load_as(c, turn, Shape::Single, None, None).await?;
            witnessed
                .load_as(c, turn, Shape::Single, None, None)
                .await?;
        }
        // (w3) on a log of its own, at the open-loop rate.
        let w3_args = witnessed_args(&lag_key_file);
        let w3_args: Vec<&str> = w3_args.iter().map(String::as_str).collect();
        let mut lagged = Scenario::start(&self.bin, &pg, &w3_args, false).await?;
        let base = lagged.server.base.clone();
        let db_url = lagged
            .db
            .as_ref()
            .context("a PostgreSQL scenario")?
            .url
            .clone();
        let rate = self.args.rate;
        let d = self.d();
        let (load, lag) = tokio::join!(
            load::open_loop(&base, rate, d),
            witness::witnessed_lag(&base, &db_url, d + Duration::from_secs(3))
        );
        let (p50, p99, samples) = lag?;
        ensure!(
            load.0.errors == 0,
            "(w3): {} requests failed",
            load.0.errors
        );
        lagged.result.add(&load.0);
        for (scenario, name) in [
            (plain, "(w1) POST /events, no witnesses"),
            (witnessed, "(w2) POST /events, 2-of-3 witnesses"),
            (lagged, "(w3) POST /events at R/s, 2-of-3 witnesses"),
        ] {
            let row = scenario.finish(name, &mut self.peak_rss).await?;
            ensure!(
                row.result.errors == 0,
                "{name}: {} refused",
                row.result.errors
            );
            self.rows.push(row);
        }
        for w in processes {
            w.stop().await;
        }
        let (per_second, total) = witness::witness_rate(64, d).await?;
        self.witness_figures = Some((p50, p99, samples, per_second, total));
        Ok(())
    }

    /// A Data Storage scenario on a fresh PostgreSQL database (or SQLite file), for D.
    async fn service(
        &mut self,
        name: &'static str,
        extra: &[&str],
        shape: Shape,
        sqlite: bool,
    ) -> anyhow::Result<()> {
        let mut scenario = Scenario::start(&self.bin, &self.args.pg, extra, sqlite).await?;
        scenario.load(self.args.clients, self.d(), shape).await?;
        let row = scenario.finish(name, &mut self.peak_rss).await?;
        self.rows.push(row);
        Ok(())
    }

    /// (g) Open loop at R/s.
    async fn open_loop(&mut self) -> anyhow::Result<()> {
        let db = BenchDb::create(&self.args.pg, &self.bin).await?;
        let dir = tempfile::tempdir()?;
        let args = vec![
            "--database-url".to_string(),
            db.url.clone(),
            "--data-dir".to_string(),
            dir.path().display().to_string(),
        ];
        let server = Server::start(&self.bin, &args).await?;
        let cpu = server.cpu_seconds();
        let (r, latency) = load::open_loop(&server.base, self.args.rate, self.d()).await;
        let cpu = server.cpu_seconds() - cpu;
        let rss = server.peak_rss_mib();
        self.peak_rss = self.peak_rss.max(rss);
        server.stop().await?;
        check_stored(&db, r.events).await?;
        db.drop_db().await?;
        self.rows.push(Row {
            name: "(g) open loop at R/s, single events",
            result: r,
            server_cpu: Some(cpu),
            latency: Some(latency),
            rss: Some(rss),
        });
        Ok(())
    }

    /// (j) Queries by correlation id on a large log; then, on the same log, (l) inclusion
    /// proofs, the time the checkpointer takes to build the tree over it, and the verifier.
    async fn query(&mut self) -> anyhow::Result<()> {
        let n = self.args.log_events;
        let FilledLog {
            db,
            server,
            correlations,
            tree,
            fill: _,
            _dir,
        } = self.filled_log(n).await?;
        self.tree_build = Some((tree, server.peak_rss_mib()));

        self.large_log_reads(
            &server,
            &db,
            correlations,
            [
                "(j) GET /events?correlation_id= on the log",
                "(l) GET /events/{id}/proof on the log",
                "(t) GET /remediations/{id}/timeline of the large remediation",
                "(jq) GET /events?correlation_id= on the log, open loop at Q/s",
                "(lq) GET /events/{id}/proof on the log, open loop at Q/s",
            ],
        )
        .await?;
        let key = server.public_key().await?;
        self.peak_rss = self.peak_rss.max(server.peak_rss_mib());
        server.stop().await?;

        // The verifier recomputes every leaf from content and the whole tree, and checks every
        // checkpoint's signature.
        let started = Instant::now();
        verify(&self.bin, &db.url, &key, n).await?;
        self.verifier = Some(started.elapsed());
        if let Some(earlier) = self.args.baseline_bin.clone() {
            // In turns, the faster of two each: the machine's drift touches both alike.
            let mut best = [Duration::MAX; 2];
            for _ in 0..2 {
                for (k, bin) in [&earlier, &self.bin].into_iter().enumerate() {
                    let started = Instant::now();
                    verify(bin, &db.url, &key, n).await?;
                    best[k] = best[k].min(started.elapsed());
                }
            }
            self.verifier_against_baseline = Some((best[1], best[0]));
        }
        ensure!(
            db.count().await? as u64 == n,
            "the log does not hold {n} events"
        );
        db.drop_db().await?;
        Ok(())
    }

    /// A log of `n` events written by the generator ([`baseline::fill_log`]: the rows the
    /// service would store, over `n / 100` correlations and one large remediation), and a
    /// service on it whose checkpointer has signed a tree over all of it.
    async fn filled_log(&self, n: u64) -> anyhow::Result<FilledLog> {
        let db = BenchDb::create(&self.args.pg, &self.bin).await?;
        let correlations = (n / 100).max(1);
        let remediation = self.args.remediation_events.min(n / 2);
        let started = Instant::now();
        baseline::fill_log(&db.url, n, correlations, remediation).await?;
        let fill = started.elapsed();
        let dir = tempfile::tempdir()?;
        let args = vec![
            "--database-url".to_string(),
            db.url.clone(),
            "--data-dir".to_string(),
            dir.path().display().to_string(),
        ];
        let started = Instant::now();
        let server = Server::start(&self.bin, &args).await?;
        server.wait_for_tree(n).await?;
        Ok(FilledLog {
            db,
            server,
            correlations,
            fill,
            tree: started.elapsed(),
            _dir: dir,
        })
    }

    /// Reads on a large log filled by [`baseline::fill_log`]: queries by correlation id,
    /// inclusion proofs, and the timeline of its large remediation, named by `names`; then the
    /// queries and the proofs again at `--read-rate` each, open loop (their latency at a load
    /// the service keeps up with, where the closed loops' is their queueing at saturation).
    /// Every read must succeed.
    async fn large_log_reads(
        &mut self,
        server: &Server,
        db: &BenchDb,
        correlations: u64,
        names: [&'static str; 5],
    ) -> anyhow::Result<()> {
        let queries: Arc<Vec<String>> = Arc::new(
            (0..correlations)
                .map(|k| format!("/api/v1/audit/events?correlation_id=rr-log-{k}&limit=100"))
                .collect(),
        );
        // Checked without parsing the answer in the load generator, which shares the server's
        // cores: a page of events holds at least one, and a proof at least one hash.
        let has_events: fn(&[u8]) -> bool = |b| contains(b, b"\"data\":[{");
        let has_proof: fn(&[u8]) -> bool = |b| contains(b, b"\"inclusion_proof\":[\"");
        self.measure_reads(server, names[0], queries.clone(), has_events)
            .await;
        let proofs: Arc<Vec<String>> = Arc::new(
            db.sample_event_ids(2000)
                .await?
                .into_iter()
                .map(|id| format!("/api/v1/audit/events/{id}/proof"))
                .collect(),
        );
        self.measure_reads(server, names[1], proofs.clone(), has_proof)
            .await;
        // One request at a time: the latency of drawing the whole remediation.
        let path = format!(
            "/api/v1/audit/remediations/{}/timeline",
            baseline::BIG_REMEDIATION
        );
        self.measure_reads_with(server, names[2], Arc::new(vec![path]), 1, |b| {
            contains(b, b"\"truncated\":false") && contains(b, b"\"event_count\":")
        })
        .await;
        for (name, paths, check) in [
            (names[3], queries, has_events),
            (names[4], proofs, has_proof),
        ] {
            let cpu = server.cpu_seconds();
            let (r, latency) = load::get_open_loop(
                &server.base,
                self.args.read_rate,
                self.d() / 2,
                paths,
                check,
            )
            .await;
            self.rows.push(Row {
                name,
                result: r,
                server_cpu: Some(server.cpu_seconds() - cpu),
                latency: Some(latency),
                rss: Some(server.peak_rss_mib()),
            });
        }
        for row in &self.rows[self.rows.len() - 5..] {
            ensure!(
                row.result.errors == 0 && row.result.events > 0,
                "{}: {} of {} reads failed",
                row.name,
                row.result.errors,
                row.result.events + row.result.errors
            );
        }
        Ok(())
    }

    /// (s1)-(s7): a log of `--scale-events` built by the generator (the service's rows, its
    /// tree and checkpoints built by the service's checkpointer), then single events (s2) and
    /// batches (s4) on it in turns with a fresh log (s1, s3), the reads (s5)-(s7) on it, the
    /// streamed export's rate, `datastorage verify` over it, and its bytes on disk per event
    /// against a plain table of the same rows with the same indexes.
    async fn scale(&mut self) -> anyhow::Result<()> {
        let (n, c, b) = (self.args.scale_events, self.args.clients, self.args.batch);
        let FilledLog {
            db,
            server,
            correlations,
            fill,
            tree,
            _dir,
        } = self.filled_log(n).await?;

        // Ingest on the large log and on a fresh one, in turns.
        let mut fresh = Scenario::start(&self.bin, &self.args.pg, &[], false).await?;
        let turn = self.d() / TURNS;
        let shapes = [Shape::Single, Shape::Batch(b)];
        let mut on_fresh = [LoadResult::default(), LoadResult::default()];
        let mut on_large = [LoadResult::default(), LoadResult::default()];
        let mut cpu = [[0.0; 2]; 2];
        for (k, shape) in shapes.into_iter().enumerate() {
            for _ in 0..TURNS {
                for (which, server) in [(0, &fresh.server), (1, &server)] {
                    db::checkpoint(&self.args.pg).await;
                    let before = server.cpu_seconds();
                    let r = load::closed_loop(&server.base, c, turn, shape).await?;
                    cpu[which][k] += server.cpu_seconds() - before;
                    if which == 0 {
                        on_fresh[k].add(&r);
                    } else {
                        on_large[k].add(&r);
                    }
                }
            }
        }
        let written: u64 = on_large.iter().map(|r| r.events).sum();
        fresh.result = on_fresh[0];
        fresh.result.add(&on_fresh[1]);
        let names = [
            [
                "(s1) POST /events, fresh log (in turns with s2)",
                "(s3) POST /events/batch, fresh log (in turns with s4)",
            ],
            [
                "(s2) POST /events, on the large log",
                "(s4) POST /events/batch, on the large log",
            ],
        ];
        let fresh_rss = fresh.server.peak_rss_mib();
        fresh.finish("(s) fresh log", &mut self.peak_rss).await?;
        for (which, results) in [(0, &on_fresh), (1, &on_large)] {
            for k in 0..2 {
                self.rows.push(Row {
                    name: names[which][k],
                    result: results[k],
                    server_cpu: Some(cpu[which][k]),
                    latency: None,
                    rss: Some(if which == 0 {
                        fresh_rss
                    } else {
                        server.peak_rss_mib()
                    }),
                });
            }
        }
        self.rows.sort_by_key(|r| r.name);
        let total = n + written;
        server.wait_for_tree(total).await?;

        self.large_log_reads(
            &server,
            &db,
            correlations,
            [
                "(s5) GET /events?correlation_id= on the large log",
                "(s6) GET /events/{id}/proof on the large log",
                "(s7) GET /remediations/{id}/timeline on the large log",
                "(s5q) GET /events?correlation_id= on the large log, open loop at Q/s",
                "(s6q) GET /events/{id}/proof on the large log, open loop at Q/s",
            ],
        )
        .await?;
        let export = scale::export_rate(&server.base, self.d() * 3).await?;
        let key = server.public_key().await?;
        self.peak_rss = self.peak_rss.max(server.peak_rss_mib());
        server.stop().await?;

        // The log also holds the service's own record of the export (its access trail).
        let stored = db.count().await? as u64;
        ensure!(
            (total..total + 10).contains(&stored),
            "the large log holds {stored} events, not the {total} written and the export's record"
        );
        let started = Instant::now();
        verify(&self.bin, &db.url, &key, stored).await?;
        let verifier = started.elapsed();
        let disk = scale::disk(&db.url).await?;
        if self.args.keep_log {
            eprintln!(
                "audit-bench: kept the large log: {} (public key {key})",
                db.url
            );
        } else {
            db.drop_db().await?;
        }
        self.scale_figures = Some(ScaleFigures {
            events: n,
            fill,
            tree,
            export,
            verified: stored,
            verifier,
            disk,
        });
        Ok(())
    }

    /// (r1)-(r3): see `retention.rs`. Both months are written first, each held; (r1) is the
    /// open loop with nothing to purge, (r2) the same while the first month is dropped, (r3)
    /// while the second is purged row by row. Then `datastorage verify` must pass the log.
    async fn retention(&mut self) -> anyhow::Result<()> {
        let (n, rate, d) = (self.args.retention_events, self.args.rate, self.d());
        let db = BenchDb::create(&self.args.pg, &self.bin).await?;
        let dir = tempfile::tempdir()?;
        let started = Instant::now();
        baseline::fill_expired(&db.url, n, retention::in_month(3), "rr-drop").await?;
        baseline::fill_expired(&db.url, n, retention::in_month(2), "rr-rows").await?;
        baseline::fill_expired(&db.url, 1, retention::in_month(2), "rr-kept").await?;
        for correlation in ["rr-drop", "rr-rows", "rr-kept"] {
            retention::hold(&db.url, correlation).await?;
        }
        let fill = started.elapsed();
        let server =
            retention::start(&self.bin, &db.url, &dir.path().display().to_string()).await?;
        server.wait_for_tree(2 * n + 1).await?;
        db::checkpoint(&self.args.pg).await;
        let before = server.cpu_seconds();
        let (result, latency) = load::open_loop(&server.base, rate, d).await;
        let mut cpu = vec![server.cpu_seconds() - before];
        let mut purges = Vec::new();
        for correlation in ["rr-drop", "rr-rows"] {
            db::checkpoint(&self.args.pg).await;
            let before = server.cpu_seconds();
            purges.push(retention::purge_under_load(&server, &db.url, correlation, rate, d).await?);
            cpu.push(server.cpu_seconds() - before);
        }
        let key = server.public_key().await?;
        self.peak_rss = self.peak_rss.max(server.peak_rss_mib());
        server.stop().await?;
        let stored = db.count().await? as u64;
        verify(&self.bin, &db.url, &key, stored).await?;
        db.drop_db().await?;
        let names = [
            "(r1) POST /events at R/s, nothing purged",
            "(r2) POST /events at R/s, a month of expired events dropped",
            "(r3) POST /events at R/s, as many purged row by row",
        ];
        let loads =
            std::iter::once((result, latency)).chain(purges.iter().map(|p| (p.load, p.latency)));
        for ((name, (result, latency)), cpu) in names.into_iter().zip(loads).zip(cpu) {
            self.rows.push(Row {
                name,
                result,
                server_cpu: Some(cpu),
                latency: Some(latency),
                rss: None,
            });
        }
        let [dropped, rows] = <[retention::PurgeFigures; 2]>::try_from(purges)
            .map_err(|_| anyhow::anyhow!("two purges"))?;
        ensure!(
            dropped.dropped_partitions == 1 && dropped.events == n,
            "the drop purged {} events in {} partitions, not {n} in one",
            dropped.events,
            dropped.dropped_partitions
        );
        ensure!(
            rows.dropped_partitions == 0 && rows.events == n,
            "the row purge purged {} events ({} partitions dropped), not {n} row by row",
            rows.events,
            rows.dropped_partitions
        );
        self.retention_figures = Some(RetentionFigures {
            events: n,
            fill,
            baseline_p99: latency.p99,
            dropped,
            rows,
        });
        Ok(())
    }

    /// (m) Single events through two replicas on one PostgreSQL database, half the clients on
    /// each, in turns with (m1) one replica on another database: what a second replica on the
    /// shared log head adds or costs. Afterwards the two replicas' log must be gap-free (checked
    /// by the count), its commit times must not step backwards along `seq`, and `verify` must
    /// pass it, checkpoints of both replicas included.
    async fn replicas(&mut self) -> anyhow::Result<()> {
        let (c, turn) = (self.args.clients, self.d() / TURNS);
        let mut one = Scenario::start(&self.bin, &self.args.pg, &[], false).await?;
        let mut two = Scenario::start(&self.bin, &self.args.pg, &[], false).await?;
        let url = two
            .db
            .as_ref()
            .context("a PostgreSQL scenario")?
            .url
            .clone();
        // The second replica: the same database, a data directory of its own, the same key.
        let second_dir = tempfile::tempdir()?;
        let key_file = two.dir.path().join("checkpoint.key");
        let second = Server::start(
            &self.bin,
            &[
                "--database-url".to_string(),
                url.clone(),
                "--data-dir".to_string(),
                second_dir.path().display().to_string(),
                "--checkpoint-key-file".to_string(),
                key_file.display().to_string(),
            ],
        )
        .await?;
        for _ in 0..TURNS {
            db::checkpoint(&self.args.pg).await;
            one.load(c, turn, Shape::Single).await?;
            db::checkpoint(&self.args.pg).await;
            let cpu = two.server.cpu_seconds() + second.cpu_seconds();
            let bases = [two.server.base.as_str(), second.base.as_str()];
            let r = load::closed_loop_on(&bases, c, turn, Shape::Single).await?;
            two.cpu += two.server.cpu_seconds() + second.cpu_seconds() - cpu;
            two.result.add(&r);
        }
        let n = two.result.events;
        two.server.wait_for_tree(n).await?;
        let key = two.server.public_key().await?;
        self.peak_rss = self.peak_rss.max(second.peak_rss_mib());
        second.stop().await?;
        let db = two.db.as_ref().context("a PostgreSQL scenario")?;
        let steps = db.commit_steps_back().await?;
        ensure!(
            steps == 0,
            "commit times step backwards {steps} times along seq"
        );
        verify(&self.bin, &url, &key, n).await?;
        let row = one.finish(
            "(m1) POST /events, one replica (in turns with m)",
            &mut self.peak_rss,
        );
        self.rows.push(row.await?);
        let row = two.finish(
            "(m) POST /events, two replicas on one database",
            &mut self.peak_rss,
        );
        self.rows.push(row.await?);
        Ok(())
    }

    /// A read scenario against a running server: 4 clients for D/2.
    async fn measure_reads(
        &mut self,
        server: &Server,
        name: &'static str,
        paths: Arc<Vec<String>>,
        check: fn(&[u8]) -> bool,
    ) {
        self.measure_reads_with(server, name, paths, 4, check).await
    }

    /// Reads `paths` from `clients` clients for half the scenario's duration.
    async fn measure_reads_with(
        &mut self,
        server: &Server,
        name: &'static str,
        paths: Arc<Vec<String>>,
        clients: usize,
        check: fn(&[u8]) -> bool,
    ) {
        let cpu = server.cpu_seconds();
        let (r, latency) = load::get_loop(&server.base, clients, self.d() / 2, paths, check).await;
        let cpu = server.cpu_seconds() - cpu;
        self.rows.push(Row {
            name,
            result: r,
            server_cpu: Some(cpu),
            latency: Some(latency),
            rss: Some(server.peak_rss_mib()),
        });
    }

    fn print(&self) -> anyhow::Result<()> {
        println!();
        println!("| scenario | per s | count | errors | server CPU s per 10k | p50 ms | p95 ms | p99 ms | max ms | peak RSS MiB |");
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for r in &self.rows {
            let cpu = r.server_cpu.map_or("-".to_string(), |s| {
                format!("{:.2}", s / (r.result.events.max(1) as f64) * 10_000.0)
            });
            let lat = r.latency.map_or("- | - | - | -".to_string(), |l| {
                format!("{:.1} | {:.1} | {:.1} | {:.1}", l.p50, l.p95, l.p99, l.max)
            });
            println!(
                "| {} | {:.0} | {} | {} | {} | {} | {} |",
                r.name,
                r.result.rate(),
                r.result.events,
                r.result.errors,
                cpu,
                lat,
                r.rss.map_or("-".to_string(), |m| format!("{m:.1}"))
            );
        }
        if !self.dlq.is_empty() {
            println!();
            println!("| DLQ backend | writes/s while PostgreSQL is down | drain of {} events into PostgreSQL |", self.args.drain_events);
            println!("|---|---:|---:|");
            for f in &self.dlq {
                println!(
                    "| {} | {:.0} | {:.0} events/s ({:.1} s) |",
                    f.backend,
                    f.down.rate(),
                    f.drain_rate(),
                    f.drain_time.as_secs_f64()
                );
            }
        }
        let rate = |prefix: &str| {
            self.rows
                .iter()
                .find(|r| r.name.starts_with(prefix))
                .map_or(0.0, |r| r.result.rate())
        };
        println!();
        for (over, under, what) in RATIOS {
            // A ratio whose two rows were both measured in this run.
            let (a, b) = (rate(over), rate(under));
            if a > 0.0 && b > 0.0 {
                println!("{over}/{under} = {:.3}{what}", a / b);
            }
        }
        let n = self.args.log_events as f64;
        if let Some((p50, p99, samples, per_second, total)) = self.witness_figures {
            println!(
                "(w3) commit to witnessed checkpoint at {} events/s: p50 {p50:.0} ms, p99 {p99:.0} ms ({samples} samples, 1 s checkpoint interval)",
                self.args.rate
            );
            println!(
                "(w4) one witness on one core: {per_second:.0} cosigned add-checkpoint requests/s ({total} in all, 64 logs)"
            );
        }
        if let Some((t, rss)) = self.tree_build {
            println!(
                "tree over the {n:.0}-event log built and signed in {:.1} s ({:.0} leaves/s, service start included; peak RSS by then {rss:.1} MiB)",
                t.as_secs_f64(),
                n / t.as_secs_f64()
            );
        }
        if let Some(t) = self.verifier {
            println!(
                "verifier over the {n:.0}-event log: {:.1} s ({:.0} events/s)",
                t.as_secs_f64(),
                n / t.as_secs_f64()
            );
        }
        if let Some((this, earlier)) = self.verifier_against_baseline {
            println!(
                "verifier over the {n:.0}-event log, this build {:.0} events/s, --baseline-bin {:.0} events/s: {:.3}",
                n / this.as_secs_f64(),
                n / earlier.as_secs_f64(),
                earlier.as_secs_f64() / this.as_secs_f64()
            );
        }
        if let Some(f) = &self.scale_figures {
            f.print();
        }
        if let Some(f) = &self.retention_figures {
            f.print();
        }
        println!("peak RSS of datastorage: {:.1} MiB", self.peak_rss);
        let own = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF)
            .context("getrusage")?;
        let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
        println!(
            "load generator CPU: {:.1} s",
            secs(own.user_time()) + secs(own.system_time())
        );
        Ok(())
    }
}

/// A generated log with a service on it (see `Bench::filled_log`).
struct FilledLog {
    db: BenchDb,
    server: Server,
    correlations: u64,
    /// Time to write the rows.
    fill: Duration,
    /// Time from the service's start to a signed checkpoint over every row.
    tree: Duration,
    _dir: tempfile::TempDir,
}

/// What the scale run measured besides its rows.
struct ScaleFigures {
    events: u64,
    fill: Duration,
    tree: Duration,
    /// Events read from the streamed export, and in how long.
    export: (u64, Duration),
    /// Events `datastorage verify` checked, and in how long.
    verified: u64,
    verifier: Duration,
    disk: scale::DiskFigures,
}

impl ScaleFigures {
    fn print(&self) {
        let n = self.events as f64;
        let per_second = |count: u64, t: Duration| count as f64 / t.as_secs_f64();
        println!();
        println!(
            "scale: {n:.0}-event log written by the generator in {:.1} s; tree over it built and signed in {:.1} s ({:.0} leaves/s, service start included)",
            self.fill.as_secs_f64(),
            self.tree.as_secs_f64(),
            per_second(self.events, self.tree)
        );
        let (exported, t) = self.export;
        println!(
            "scale: streamed export with proofs: {exported} events in {:.1} s ({:.0} events/s; target at least 100 000)",
            t.as_secs_f64(),
            per_second(exported, t)
        );
        println!(
            "scale: datastorage verify over {} events: {:.1} s ({:.0} events/s; target at least 200 000)",
            self.verified,
            self.verifier.as_secs_f64(),
            per_second(self.verified, self.verifier)
        );
        let d = &self.disk;
        let per_event = |bytes: i64| bytes as f64 / d.events.max(1) as f64;
        println!();
        println!("| on disk ({} events) | bytes per event |", d.events);
        println!("|---|---:|");
        for r in d.log.iter().chain(&d.plain) {
            println!("| {} | {:.1} |", r.name, per_event(r.bytes));
        }
        println!(
            "| **the log, all of it** | **{:.1}** |",
            per_event(d.log_total())
        );
        println!(
            "| **the plain table with the same indexes** | **{:.1}** |",
            per_event(d.plain_total())
        );
        println!(
            "scale: the log over the plain table on disk = {:.3} (target at most 1.3)",
            d.log_total() as f64 / d.plain_total().max(1) as f64
        );
    }
}

/// What the retention run measured besides its rows.
struct RetentionFigures {
    events: u64,
    fill: Duration,
    /// (r1)'s p99 (ms), the denominator of the targets.
    baseline_p99: f64,
    dropped: retention::PurgeFigures,
    rows: retention::PurgeFigures,
}

impl RetentionFigures {
    fn print(&self) {
        println!();
        println!(
            "retention: two months of {} expired events written by the generator in {:.1} s",
            self.events,
            self.fill.as_secs_f64()
        );
        println!(
            "| purge | events | took | content on disk before | after | ingest p99 over (r1) |"
        );
        println!("|---|---:|---:|---:|---:|---:|");
        let mib = |b: i64| b as f64 / (1 << 20) as f64;
        for (what, p) in [
            ("(r2) a month dropped whole", &self.dropped),
            ("(r3) row by row", &self.rows),
        ] {
            println!(
                "| {what} | {} | {:.3} s | {:.1} MiB | {:.1} MiB | {:.2} |",
                p.events,
                p.took.as_secs_f64(),
                mib(p.content_before),
                mib(p.content_after),
                p.latency.p99 / self.baseline_p99.max(f64::MIN_POSITIVE)
            );
        }
        println!(
            "retention: ingest p99 while a month is dropped {:.2} ms against {:.2} ms with nothing purged (target: at most 2x and under 20 ms)",
            self.dropped.latency.p99, self.baseline_p99
        );
    }
}

/// Turns of a paired measurement (see `Bench::paired`).
const TURNS: u32 = 3;

impl Row {
    fn baseline(name: &'static str, result: LoadResult) -> Row {
        Row {
            name,
            result,
            server_cpu: None,
            latency: None,
            rss: None,
        }
    }
}

/// A `datastorage` process on a fresh PostgreSQL database (or SQLite file), loaded in one or
/// more turns; afterwards every event it acknowledged must be stored.
struct Scenario {
    server: Server,
    db: Option<BenchDb>,
    dir: tempfile::TempDir,
    result: LoadResult,
    cpu: f64,
}

impl Scenario {
    async fn start(bin: &Path, pg: &str, extra: &[&str], sqlite: bool) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let db = if sqlite {
            // The database server's flush of the last scenario's pages would take CPU from this one.
            db::checkpoint(pg).await;
            None
        } else {
            Some(BenchDb::create(pg, bin).await?)
        };
        let url = match &db {
            Some(db) => db.url.clone(),
            None => format!("sqlite://{}", dir.path().join("audit.db").display()),
        };
        let mut args = vec![
            "--database-url".to_string(),
            url,
            "--data-dir".to_string(),
            dir.path().display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let server = Server::start(bin, &args).await?;
        Ok(Scenario {
            server,
            db,
            dir,
            result: LoadResult::default(),
            cpu: 0.0,
        })
    }

    /// One turn of closed-loop load.
    async fn load(
        &mut self,
        clients: usize,
        duration: Duration,
        shape: Shape,
    ) -> anyhow::Result<()> {
        self.load_as(clients, duration, shape, None, None).await
    }

    /// [`Scenario::load`] with a bearer token, over TLS with `tls`.
    async fn load_as(
        &mut self,
        clients: usize,
        duration: Duration,
        shape: Shape,
        token: Option<&str>,
        tls: Option<&conn::Tls>,
    ) -> anyhow::Result<()> {
        let cpu = self.server.cpu_seconds();
        let base = self.server.base.clone();
        let r = load::closed_loop_as(&[&base], clients, duration, shape, token, tls).await?;
        self.cpu += self.server.cpu_seconds() - cpu;
        self.result.add(&r);
        Ok(())
    }

    /// Stops the service, checks what it stored, and gives the scenario's row.
    async fn finish(self, name: &'static str, peak_rss: &mut f64) -> anyhow::Result<Row> {
        let rss = self.server.peak_rss_mib();
        *peak_rss = peak_rss.max(rss);
        self.server.stop().await?;
        match self.db {
            Some(db) => {
                check_stored(&db, self.result.events).await?;
                db.drop_db().await?;
            }
            None => {
                check_stored_sqlite(&self.dir.path().join("audit.db"), self.result.events).await?
            }
        }
        Ok(Row {
            name,
            result: self.result,
            server_cpu: Some(self.cpu),
            latency: None,
            rss: Some(rss),
        })
    }
}

/// A certificate for the service (made here, written into `dir`): the listener's arguments,
/// and the load's TLS configuration trusting it.
fn tls_files(dir: &Path) -> anyhow::Result<(Vec<String>, conn::Tls)> {
    let ca = test_pki::TestCa::new("bench CA");
    let (cert, key) = ca.server(&["127.0.0.1", "localhost"]).write(dir, "server");
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::pem::PemObject::pem_slice_iter(ca.pem().as_bytes()) {
        roots.add(cert?)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let args = vec![
        "--tls-cert-file".to_string(),
        cert.display().to_string(),
        "--tls-key-file".to_string(),
        key.display().to_string(),
    ];
    Ok((args, std::sync::Arc::new(config)))
}

/// `datastorage verify` passes the log at `url`, of `n` events, with the public key `key`.
async fn verify(bin: &Path, url: &str, key: &str, n: u64) -> anyhow::Result<()> {
    let out = tokio::process::Command::new(bin)
        .args(["verify", "--database-url", url, "--public-key", key])
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success() && stdout.contains(&format!("OK: {n} events")),
        "verify failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Every event counted as written is in the database.
async fn check_stored(db: &BenchDb, acknowledged: u64) -> anyhow::Result<()> {
    let stored = db.count().await?;
    ensure!(
        stored as u64 == acknowledged,
        "{acknowledged} events acknowledged but {stored} stored"
    );
    ensure!(acknowledged > 0, "no event was written");
    Ok(())
}

async fn check_stored_sqlite(path: &Path, acknowledged: u64) -> anyhow::Result<()> {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display())).await?;
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events")
        .fetch_one(&pool)
        .await?;
    pool.close().await;
    ensure!(
        stored as u64 == acknowledged,
        "{acknowledged} events acknowledged but {stored} stored in SQLite"
    );
    ensure!(acknowledged > 0, "no event was written");
    Ok(())
}
