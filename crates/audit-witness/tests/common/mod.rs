//! `audit-witness` as a process: its key made with `keygen`, `serve` started and awaited until
//! it says it serves.

use std::ffi::OsString;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use audit_model::cosignature::CosignatureVerifier;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A running witness and the port it listens on.
pub struct Process {
    pub child: Child,
    pub port: u16,
}

/// `audit-witness keygen` of a witness named `name` into `dir/witness.key`; its verifier key.
pub fn keygen(dir: &Path, name: &str) -> CosignatureVerifier {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_audit-witness"))
        .args(["keygen", "--name", name, "--out"])
        .arg(dir.join("witness.key"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    CosignatureVerifier::parse(String::from_utf8(out.stdout).unwrap().trim()).unwrap()
}

/// `audit-witness serve` on `127.0.0.1:port` (0: any) with the key and the state in `dir`, for
/// the log of `log_key`, with `extra` arguments; returns once it serves.
pub async fn serve(dir: &Path, log_key: &str, port: u16, extra: &[OsString]) -> Process {
    let mut child = Command::new(env!("CARGO_BIN_EXE_audit-witness"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--key-file")
        .arg(dir.join("witness.key"))
        .args(["--log-key", log_key])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(extra)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if v["fields"]["message"] == "audit-witness serving" {
                return v["fields"]["addr"].as_str().unwrap().to_string();
            }
        }
        panic!("the witness exited before serving")
    })
    .await
    .expect("the witness serves within 30 s");
    // Its log keeps being read so that it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Process {
        child,
        port: addr.rsplit(':').next().unwrap().parse().unwrap(),
    }
}
