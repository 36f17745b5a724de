//! The benchmark's smoke mode, run by the test suite so that the benchmark cannot rot: every
//! figure must be produced and every written event stored (the benchmark checks the database
//! after each scenario and fails otherwise). No timing is asserted.

use std::path::PathBuf;
use std::process::Command;

fn postgres_answers() -> bool {
    std::net::TcpStream::connect("127.0.0.1:5432").is_ok()
}

#[test]
fn smoke_run_produces_every_figure() {
    if !postgres_answers() {
        if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
            panic!("PostgreSQL is required under CI but is not reachable");
        }
        eprintln!("\n*** SKIPPED: PostgreSQL is not reachable; start it to run this test ***\n");
        return;
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
        .args(["--smoke", "--dlq", "--datastorage"])
        .arg(&datastorage)
        .output()
        .expect("audit-bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "audit-bench failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for scenario in [
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
    ] {
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
    for row in ["| journal |", "| redis |"] {
        assert!(stdout.contains(row), "no DLQ row {row}:\n{stdout}");
    }
    for figure in [
        "(d)/(a) =",
        "(d)/(e) =",
        "(f)/(c) =",
        "(d)/(k) =",
        "(m)/(m1) =",
        "(n2)/(n1) =",
        "(n3)/(n1) =",
        "tree over the 2000-event log built and signed in",
        "verifier over the 2000-event log:",
        "peak RSS of datastorage:",
        "load generator CPU:",
    ] {
        assert!(stdout.contains(figure), "no {figure}:\n{stdout}");
    }
}
