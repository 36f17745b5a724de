//! The manifests under `deploy/` only name settings the binaries understand.

use std::collections::BTreeSet;

use clap::{Args, Command};

fn env_names_of<A: Args>() -> BTreeSet<String> {
    A::augment_args(Command::new("x"))
        .get_arguments()
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .collect()
}

/// The `env` names of the first container of a Deployment manifest.
fn deployment_env(path: &str) -> Vec<String> {
    let file = format!("{}/../../deploy/{path}", env!("CARGO_MANIFEST_DIR"));
    let doc: serde_json::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    doc["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_controller_deployment_sets_only_known_variables() {
    let known = env_names_of::<notification_controller::config::RunArgs>();
    for name in deployment_env("notification-controller/deployment.yaml") {
        if name == "RUST_LOG" {
            continue;
        }
        assert!(
            known.contains(&name),
            "{name} is not a notification-controller setting"
        );
    }
    assert!(known.contains("DATA_STORAGE_URL"));
}

#[test]
fn the_datastorage_deployment_sets_only_known_variables() {
    let known = env_names_of::<datastorage::config::ServeArgs>();
    for name in deployment_env("datastorage/deployment.yaml") {
        assert!(known.contains(&name), "{name} is not a datastorage setting");
    }
}
