//! A `datastorage serve` child process, ready when it logs its bound address.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub struct ServerProcess {
    pub child: Child,
    pub base: String,
    /// Holds the signing key of a server started without a data directory.
    _key_dir: Option<tempfile::TempDir>,
}

impl ServerProcess {
    /// Starts `datastorage serve` with `args` on a free port and waits for it to serve.
    pub async fn start(args: &[&str]) -> ServerProcess {
        let mut command = Command::new(env!("CARGO_BIN_EXE_datastorage"));
        command
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
            .arg("--create-checkpoint-key");
        // Without a data directory or a key file the key would land in the working directory:
        // give it a directory of its own (a restart with a data directory keeps its key there).
        let key_dir = (!args.contains(&"--data-dir") && !args.contains(&"--checkpoint-key-file"))
            .then(|| tempfile::tempdir().unwrap());
        if let Some(dir) = &key_dir {
            command
                .arg("--checkpoint-key-file")
                .arg(dir.path().join("checkpoint.key"));
        }
        let mut child = command
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("datastorage starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let mut lines = BufReader::new(stderr).lines();
        let base = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await.expect("read stderr") {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                if v["message"] == "datastorage serving" {
                    return format!("http://{}", v["addr"].as_str().expect("addr logged"));
                }
            }
            panic!("datastorage exited before serving");
        })
        .await
        .expect("datastorage serves within 60 s");
        // Keep draining stderr so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        ServerProcess {
            child,
            base,
            _key_dir: key_dir,
        }
    }

    pub fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.id().expect("child is running") as i32)
    }

    pub fn terminate(&self) {
        nix::sys::signal::kill(self.pid(), nix::sys::signal::Signal::SIGTERM)
            .expect("SIGTERM sent");
    }
}

/// `datastorage keygen --out <dir>/checkpoint.key`: the key file's path and the public key.
pub fn keygen(dir: &std::path::Path) -> (String, String) {
    let path = dir.join("checkpoint.key");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_datastorage"))
        .args(["keygen", "--out"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    (path.display().to_string(), public)
}

/// `datastorage verify` of the log at `url`: whether it passed, and what it printed.
pub fn verify(url: &str, public_key: &str) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_datastorage"))
        .args(["verify", "--database-url", url, "--public-key", public_key])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.code().is_some(),
        "verify was killed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), stdout)
}
