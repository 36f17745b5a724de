//! The monitoring in `deploy/monitoring/`: the PrometheusRule's groups pass `promtool check
//! rules`, every alert fires and stays quiet when its unit tests say (`promtool test rules` on
//! `deploy/monitoring/tests/rules-test.yaml`), and every alert has a runbook section in
//! `docs/operations.md`; the Grafana dashboard is a well-formed import whose queries parse
//! (`promtool check rules` on them) and name only metrics the services export. Without promtool the test says so and skips, except under CI, where it
//! fails (`.ci/run` installs Debian's prometheus).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml_ng::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn promtool(args: &[&str], dir: &Path) -> Option<(bool, String)> {
    match Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
    {
        Ok(out) => Some((
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )),
        Err(_) => {
            assert!(
                std::env::var("CI").is_err(),
                "promtool is missing under CI (.ci/run installs Debian's prometheus)"
            );
            eprintln!("SKIPPED: promtool is not installed (apt-get install prometheus)");
            None
        }
    }
}

fn load(path: &Path) -> Value {
    serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Every alert's name.
fn alerts(groups: &Value) -> Vec<String> {
    groups
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap())
        .filter_map(|r| r["alert"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn every_alert_is_valid_unit_tested_both_ways_and_has_a_runbook() {
    let rule = load(&repo().join("deploy/monitoring/prometheusrule.yaml"));
    assert_eq!(rule["kind"], "PrometheusRule");
    let groups = rule["spec"]["groups"].clone();
    let names = alerts(&groups);
    assert!(names.len() >= 10, "{names:?}");

    // Each alert has a runbook in docs/operations.md.
    let operations = std::fs::read_to_string(repo().join("docs/operations.md")).unwrap();
    for r in groups
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap())
    {
        let name = r["alert"].as_str().unwrap();
        let runbook = r["annotations"]["runbook"].as_str().unwrap_or_default();
        assert_eq!(
            runbook,
            format!("docs/operations.md#{}", name.to_lowercase()),
            "{name}"
        );
        assert!(
            operations.contains(&format!("\n### {name}\n")),
            "docs/operations.md has no runbook section for {name}"
        );
        assert!(
            r["labels"]["severity"].as_str().is_some(),
            "{name} has no severity"
        );
        for metric in metrics_read(r["expr"].as_str().unwrap()) {
            assert!(
                exported().contains(&metric),
                "{name}: {metric} is not exported"
            );
        }
    }

    // Each alert is tested firing and quiet.
    let tests = load(&repo().join("deploy/monitoring/tests/rules-test.yaml"));
    let (mut fires, mut quiet) = (BTreeSet::new(), BTreeSet::new());
    for group in tests["tests"].as_sequence().unwrap() {
        for case in group["alert_rule_test"].as_sequence().unwrap() {
            let name = case["alertname"].as_str().unwrap().to_owned();
            let expected = case["exp_alerts"].as_sequence().map_or(0, Vec::len);
            if expected > 0 {
                fires.insert(name);
            } else {
                quiet.insert(name);
            }
        }
    }
    for name in &names {
        assert!(fires.contains(name), "no test where {name} fires");
        assert!(quiet.contains(name), "no test where {name} stays quiet");
    }

    // promtool: the groups as written, then the unit tests on them (annotations left out, so
    // the tests state when an alert fires and with which labels; their templates are checked
    // by `check rules` on the full groups).
    let dir = tempfile::tempdir().unwrap();
    let full = serde_yaml_ng::to_string(&serde_yaml_ng::Mapping::from_iter([(
        Value::from("groups"),
        groups.clone(),
    )]))
    .unwrap();
    std::fs::write(dir.path().join("full.yaml"), full).unwrap();
    let Some((ok, said)) = promtool(&["check", "rules", "full.yaml"], dir.path()) else {
        return;
    };
    assert!(ok, "promtool check rules: {said}");
    let mut bare = groups;
    for group in bare.as_sequence_mut().unwrap() {
        for r in group["rules"].as_sequence_mut().unwrap() {
            r.as_mapping_mut().unwrap().remove("annotations");
        }
    }
    let bare = serde_yaml_ng::to_string(&serde_yaml_ng::Mapping::from_iter([(
        Value::from("groups"),
        bare,
    )]))
    .unwrap();
    std::fs::write(dir.path().join("rules.yaml"), bare).unwrap();
    std::fs::copy(
        repo().join("deploy/monitoring/tests/rules-test.yaml"),
        dir.path().join("rules-test.yaml"),
    )
    .unwrap();
    let (ok, said) = promtool(&["test", "rules", "rules-test.yaml"], dir.path()).unwrap();
    assert!(ok, "promtool test rules: {said}");
}

/// Every metric name the services export: Data Storage's, the audit client's, the process's.
fn exported() -> BTreeSet<String> {
    use audit_client::metric_names as client;
    let mut names: BTreeSet<String> = datastorage::metrics::DESCRIPTIONS
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    for n in [
        client::RECORDED,
        client::SENT,
        client::DROPPED,
        client::SPILLED,
        client::BUFFER_LEN,
        client::BATCH_DURATION,
    ] {
        names.insert(n.to_string());
    }
    for n in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_threads",
        "process_start_time_seconds",
    ] {
        names.insert(n.to_string());
    }
    names
}

/// The metric names a PromQL expression reads (ours: `datastorage_`, `audit_client_`,
/// `process_`), a histogram's series folded into its family.
fn metrics_read(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|t| {
            ["datastorage_", "audit_client_", "process_"]
                .iter()
                .any(|p| t.starts_with(p))
        })
        .map(|t| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| t.strip_suffix(s))
                .unwrap_or(t)
                .to_string()
        })
        .collect()
}

#[test]
fn the_dashboard_imports_and_reads_only_exported_metrics() {
    let text =
        std::fs::read_to_string(repo().join("deploy/monitoring/grafana-dashboard.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    for key in ["uid", "title"] {
        assert!(
            dashboard[key].as_str().is_some_and(|s| !s.is_empty()),
            "{key}"
        );
    }
    assert!(dashboard["schemaVersion"].as_u64() >= Some(36));
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert!(variables.contains(&"datasource"), "{variables:?}");
    let panels = dashboard["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    let exported = exported();
    let mut exprs = Vec::new();
    for panel in panels {
        let id = panel["id"].as_u64().expect("a panel id");
        assert!(ids.insert(id), "panel id {id} twice");
        let grid = &panel["gridPos"];
        for k in ["h", "w", "x", "y"] {
            assert!(grid[k].as_u64().is_some(), "panel {id} gridPos.{k}");
        }
        assert!(grid["x"].as_u64().unwrap() + grid["w"].as_u64().unwrap() <= 24);
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "panel {id}");
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "panel {id} has no query");
        for t in targets {
            let expr = t["expr"].as_str().unwrap();
            let read = metrics_read(expr);
            assert!(
                !read.is_empty(),
                "panel {id} reads none of our metrics: {expr}"
            );
            for name in read {
                assert!(
                    exported.contains(&name),
                    "panel {id}: {name} is not exported"
                );
            }
            exprs.push(expr.replace("$instance", ".*"));
        }
    }
    // Every query parses: promtool checks them as recording rules.
    let rules = serde_json::json!({"groups": [{
        "name": "dashboard",
        "rules": exprs.iter().enumerate().map(|(i, e)| serde_json::json!({
            "record": format!("dashboard:query_{i}"),
            "expr": e,
        })).collect::<Vec<_>>(),
    }]});
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("queries.yaml"),
        serde_yaml_ng::to_string(&rules).unwrap(),
    )
    .unwrap();
    let Some((ok, said)) = promtool(&["check", "rules", "queries.yaml"], dir.path()) else {
        return;
    };
    assert!(
        ok,
        "promtool check rules on the dashboard's queries: {said}"
    );
}
