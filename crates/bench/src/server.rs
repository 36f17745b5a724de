//! A `datastorage` child process under test, with its resource use read from `/proc`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A running `datastorage serve`.
pub struct Server {
    child: Child,
    pub base: String,
}

impl Server {
    /// Starts the binary with `args` on a free port and waits until it serves.
    pub async fn start(bin: &Path, args: &[String]) -> anyhow::Result<Server> {
        let mut child = Command::new(bin)
            .arg("serve")
            .args([
                "--listen",
                "127.0.0.1:0",
                "--log-format",
                "json",
                "--shutdown-delay",
                "0s",
                "--create-checkpoint-key",
            ])
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("AUDIT_BENCH_SERVER_LOG")
                    .unwrap_or_else(|_| "warn,datastorage=info".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let stderr = child.stderr.take().context("stderr is piped")?;
        let mut lines = BufReader::new(stderr).lines();
        let base = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await? {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                if v["message"] == "datastorage serving" {
                    let scheme = if v["tls"] == true { "https" } else { "http" };
                    let addr = v["addr"].as_str().unwrap_or_default();
                    return Ok(format!("{scheme}://{addr}"));
                }
            }
            bail!("datastorage exited before serving")
        })
        .await
        .context("datastorage did not start within 60 s")??;
        // Keep draining stderr; with AUDIT_BENCH_SERVER_LOG set, pass it through for profiling.
        let echo = std::env::var("AUDIT_BENCH_SERVER_LOG").is_ok();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if echo {
                    eprintln!("{line}");
                }
            }
        });
        Ok(Server { child, base })
    }

    /// Waits (up to 10 min) until a signed checkpoint covers `size` events.
    pub async fn wait_for_tree(&self, size: u64) -> anyhow::Result<()> {
        let http = reqwest::Client::new();
        let url = format!("{}/api/v1/audit/checkpoints/latest", self.base);
        tokio::time::timeout(Duration::from_secs(600), async {
            loop {
                if let Ok(r) = http.get(&url).send().await {
                    if let Ok(v) = r.json::<serde_json::Value>().await {
                        if v["tree_size"].as_u64().is_some_and(|n| n >= size) {
                            return;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await
        .context("no checkpoint covered the log within 10 min")
    }

    /// The checkpoints' public key, as published.
    pub async fn public_key(&self) -> anyhow::Result<String> {
        let v: serde_json::Value =
            reqwest::get(format!("{}/api/v1/audit/checkpoints/public-key", self.base))
                .await?
                .json()
                .await?;
        v["public_key"]
            .as_str()
            .map(String::from)
            .context("no public key published")
    }

    fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// CPU seconds (user + system) the server has used so far.
    pub fn cpu_seconds(&self) -> f64 {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())) else {
            return 0.0;
        };
        // Fields after the command name (which may hold spaces) start after the last ')'.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 = [11, 12]
            .iter()
            .filter_map(|i| fields.get(*i).and_then(|f| f.parse::<f64>().ok()))
            .sum();
        ticks / clock_ticks_per_second()
    }

    /// Peak resident set size in MiB (VmHWM).
    pub fn peak_rss_mib(&self) -> f64 {
        let Ok(status) = std::fs::read_to_string(format!("/proc/{}/status", self.pid())) else {
            return 0.0;
        };
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    }

    /// Stops the server with SIGTERM and waits for it.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let pid = nix::unistd::Pid::from_raw(self.pid() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait()).await??;
        if !status.success() {
            bail!("datastorage exited with {status}");
        }
        Ok(())
    }
}

fn clock_ticks_per_second() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100.0, |t| t as f64)
}

/// The `datastorage` binary next to this one (both are built by `cargo build --release`).
pub fn default_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("datastorage")))
        .unwrap_or_else(|| PathBuf::from("target/release/datastorage"))
}
