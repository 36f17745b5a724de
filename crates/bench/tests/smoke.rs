//! The benchmark's smoke mode, run by the test suite so that the benchmark cannot rot: every
//! figure must be produced and every written event stored (the benchmark checks the database
//! after each scenario and fails otherwise). No timing is asserted.

use std::path::PathBuf;
use std::process::Command;

fn postgres_answers() -> bool {
    std::net::TcpStream::connect("127.0.0.1:5432").is_ok()
}

/// Runs the benchmark in smoke mode with `args` against a freshly built service; its output.
/// `None` (a loud skip) when PostgreSQL is missing outside CI.
fn smoke_run(args: &[&str]) -> Option<String> {
    if !postgres_answers() {
        if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
            panic!("PostgreSQL is required under CI but is not reachable");
        }
        eprintln!("\n*** SKIPPED: PostgreSQL is not reachable; start it to run this test ***\n");
        return None;
    }
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_audit-bench"));
    // The service binary is built next to the benchmark's (same profile and target directory).
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = Command::new(cargo)
        .args(["build", "-p", "datastorage", "--bin", "datastorage"])
        .status()
        .expect("cargo runs");
    assert!(built.success(), "cannot build datastorage");
    let datastorage = bench.with_file_name("datastorage");
    let out = Command::new(&bench)
        .arg("--smoke")
        .args(args)
        .arg("--datastorage")
        .arg(&datastorage)
        .output()
        .expect("audit-bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "audit-bench failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(stdout)
}

/// Each scenario has its row, with a rate and no error.
fn assert_rows(stdout: &str, scenarios: &[&str]) {
    for scenario in scenarios {
        let row = stdout
            .lines()
            .find(|l| l.contains(scenario))
            .unwrap_or_else(|| panic!("no row for {scenario}:\n{stdout}"));
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let rate: f64 = cells[2]
            .parse()
            .unwrap_or_else(|_| panic!("no rate in {row}"));
        let errors: u64 = cells[4]
            .parse()
            .unwrap_or_else(|_| panic!("no error count in {row}"));
        assert!(rate > 0.0 && errors == 0, "{row}");
    }
}

/// Each figure is printed.
fn assert_figures(stdout: &str, figures: &[&str]) {
    for figure in figures {
        assert!(stdout.contains(figure), "no {figure}:\n{stdout}");
    }
}

#[test]
fn smoke_run_produces_every_figure() {
    let Some(stdout) = smoke_run(&["--dlq"]) else {
        return;
    };
    assert_rows(
        &stdout,
        &[
            "(a)",
            "(b)",
            "(c)",
            "(d)",
            "(e)",
            "(f)",
            "(g)",
            "(h)",
            "(i) SQLite: POST /events |",
            "(i) SQLite: POST /events/batch",
            "(j)",
            "(k)",
            "(l)",
            "(m) POST /events, two replicas",
            "(m1)",
            "(n1) POST /events, no authentication",
            "(n2) POST /events, static token",
            "(n3) POST /events, ServiceAccount token",
            "(o1) POST /events, traces off",
            "(o2) POST /events, traces exported, 1 % sampled",
            "(o3) POST /events, traces exported, all sampled",
        ],
    );
    for row in ["| journal |", "| redis |"] {
        assert!(stdout.contains(row), "no DLQ row {row}:\n{stdout}");
    }
    assert_figures(
        &stdout,
        &[
            "(d)/(a) =",
            "(d)/(e) =",
            "(f)/(c) =",
            "(d)/(k) =",
            "(m)/(m1) =",
            "(n2)/(n1) =",
            "(n3)/(n1) =",
            "(o2)/(o1) =",
            "(o3)/(o1) =",
            "trace exports received:",
            "tree over the 2000-event log built and signed in",
            "verifier over the 2000-event log:",
            "peak RSS of datastorage:",
            "load generator CPU:",
        ],
    );
}

#[test]
fn scale_smoke_run_produces_every_figure() {
    let Some(stdout) = smoke_run(&["--scale"]) else {
        return;
    };
    assert_rows(
        &stdout,
        &[
            "(s1) POST /events, fresh log",
            "(s2) POST /events, on the large log",
            "(s3) POST /events/batch, fresh log",
            "(s4) POST /events/batch, on the large log",
            "(s5) GET /events?correlation_id= on the large log",
            "(s6) GET /events/{id}/proof on the large log",
            "(s7) GET /remediations/{id}/timeline on the large log",
        ],
    );
    assert_figures(
        &stdout,
        &[
            "(s2)/(s1) =",
            "(s4)/(s3) =",
            ", shared_buffers ",
            "scale: 4000-event log written by the generator in",
            "scale: streamed export with proofs:",
            "scale: datastorage verify over",
            "| audit_leaves (heap and TOAST) |",
            "| audit_content (heap and TOAST) |",
            "| merkle_nodes (with its indexes) |",
            "| **the plain table with the same indexes** |",
            "scale: the log over the plain table on disk =",
        ],
    );
}

#[test]
fn retention_smoke_run_produces_every_figure() {
    let Some(stdout) = smoke_run(&["--retention-only"]) else {
        return;
    };
    assert_rows(
        &stdout,
        &[
            "(r1) POST /events at R/s, nothing purged",
            "(r2) POST /events at R/s, a month of expired events dropped",
            "(r3) POST /events at R/s, as many purged row by row",
        ],
    );
    assert_figures(
        &stdout,
        &[
            "retention: two months of 2000 expired events written by the generator in",
            "| (r2) a month dropped whole | 2000 |",
            "| (r3) row by row | 2000 |",
            "retention: ingest p99 while a month is dropped",
        ],
    );
}
