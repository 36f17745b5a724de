//! `audit-bench`: Data Storage against raw PostgreSQL, measured in one run on this machine.
//!
//! Every figure is a ratio against a baseline taken in the same run, because the machines are
//! shared and noisy. Each scenario gets a fresh database, and every scenario checks that the
//! events it counted as written are in the database.

mod baseline;
mod db;
mod dlq;
mod load;
mod server;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{ensure, Context};
use clap::Parser;

use db::BenchDb;
use load::LoadResult;
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
    /// Duration of each timed scenario (D).
    #[arg(long, default_value = "10s")]
    duration: humantime::Duration,
    /// A few seconds with tiny sizes: checks that every figure is produced, not how fast.
    #[arg(long)]
    smoke: bool,
    /// Events queued in the DLQ before the drain is timed.
    #[arg(long, default_value_t = 100_000)]
    drain_events: u64,
    /// Only load an already running Data Storage at this URL (for profiling), then exit.
    #[arg(long)]
    against: Option<String>,
}

struct Row {
    name: &'static str,
    result: LoadResult,
    server_cpu: Option<f64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if args.smoke {
        args.clients = 4;
        args.duration = Duration::from_millis(500).into();
        args.drain_events = 2_000;
    }
    if let Some(base) = &args.against {
        let r = load::closed_loop(base, args.clients, args.duration.into(), 1).await;
        println!(
            "{:.0} events/s ({} events, {} errors)",
            r.rate(),
            r.events,
            r.errors
        );
        return Ok(());
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
    let d: Duration = args.duration.into();
    let c = args.clients;
    println!(
        "audit-bench: C={c} D={d:?} (datastorage: {})",
        bin.display()
    );

    let mut rows = Vec::new();
    let mut peak_rss: f64 = 0.0;

    // (a) one INSERT per transaction, straight to PostgreSQL.
    let db = BenchDb::create(&args.pg, &bin).await?;
    let a = baseline::single_row_inserts(&db.url, c, d).await?;
    check_stored(&db, a.events).await?;
    db.drop_db().await?;
    rows.push(Row {
        name: "(a) PostgreSQL, 1 INSERT per txn",
        result: a,
        server_cpu: None,
    });

    // (d) and (e): single-event POSTs with group commit, then with batches of one.
    for (name, extra) in [
        ("(d) POST /events, group commit", vec![]),
        (
            "(e) POST /events, batch size 1",
            vec!["--batch-max-events".to_string(), "1".to_string()],
        ),
    ] {
        let db = BenchDb::create(&args.pg, &bin).await?;
        let mut server_args = vec!["--database-url".to_string(), db.url.clone()];
        server_args.extend(extra);
        let server = Server::start(&bin, &server_args).await?;
        let cpu_before = server.cpu_seconds();
        let r = load::closed_loop(&server.base, c, d, 1).await;
        let cpu = server.cpu_seconds() - cpu_before;
        peak_rss = peak_rss.max(server.peak_rss_mib());
        server.stop().await?;
        check_stored(&db, r.events).await?;
        db.drop_db().await?;
        rows.push(Row {
            name,
            result: r,
            server_cpu: Some(cpu),
        });
    }

    let mut dlq_figures = Vec::new();
    for backend in ["journal", "redis"] {
        dlq_figures.push(dlq::run(&args.pg, &bin, backend, c, d, args.drain_events).await?);
    }

    println!();
    println!("| scenario | events/s | events | errors | server CPU s per 10k events |");
    println!("|---|---:|---:|---:|---:|");
    for r in &rows {
        let cpu = r.server_cpu.map_or("-".to_string(), |s| {
            format!("{:.2}", s / (r.result.events.max(1) as f64) * 10_000.0)
        });
        println!(
            "| {} | {:.0} | {} | {} | {} |",
            r.name,
            r.result.rate(),
            r.result.events,
            r.result.errors,
            cpu
        );
    }
    println!();
    println!(
        "| DLQ backend | writes/s while PostgreSQL is down | drain of {} events into PostgreSQL |",
        args.drain_events
    );
    println!("|---|---:|---:|");
    for f in &dlq_figures {
        println!(
            "| {} | {:.0} | {:.0} events/s ({:.1} s) |",
            f.backend,
            f.down.rate(),
            f.drain_rate(),
            f.drain_time.as_secs_f64()
        );
    }
    let rate = |i: usize| rows[i].result.rate();
    println!();
    println!("(d)/(a) = {:.2}", rate(1) / rate(0));
    println!("(d)/(e) = {:.2}", rate(1) / rate(2));
    println!("peak RSS of datastorage: {peak_rss:.1} MiB");
    let own = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF)
        .context("getrusage")?;
    let own_cpu = own.user_time().tv_sec() as f64
        + own.user_time().tv_usec() as f64 / 1e6
        + own.system_time().tv_sec() as f64
        + own.system_time().tv_usec() as f64 / 1e6;
    println!("load generator CPU: {own_cpu:.1} s");
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
