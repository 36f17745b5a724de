//! A `datastorage serve` child process, ready when it logs its bound address.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, Command};

pub struct ServerProcess {
    pub child: Child,
    pub base: String,
    /// Holds the signing key of a server started without a data directory.
    _data_dir: Option<tempfile::TempDir>,
}

impl ServerProcess {
    /// Starts `datastorage serve` with `args` on a free port and waits for it to serve.
    pub async fn start(args: &[&str]) -> ServerProcess {
        let (server, mut lines) = ServerProcess::start_undrained(args, &[]).await;
        // Keep draining stderr so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        server
    }

    /// Like `start`, with `env` set, and its standard error left to the caller: a pipe that
    /// fills when nobody reads it.
    pub async fn start_undrained(
        args: &[&str],
        env: &[(&str, &str)],
    ) -> (ServerProcess, Lines<BufReader<ChildStderr>>) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_datastorage"));
        command
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
            .arg("--create-checkpoint-key")
            .envs(env.iter().copied());
        // Without a data directory the key and the DLQ's journal would land in the working
        // directory: give it a directory of its own (a restart with a data directory keeps them
        // there).
        let data_dir = (!args.contains(&"--data-dir")).then(|| tempfile::tempdir().unwrap());
        if let Some(dir) = &data_dir {
            command.arg("--data-dir").arg(dir.path());
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
        let server = ServerProcess {
            child,
            base,
            _data_dir: data_dir,
        };
        (server, lines)
    }

    /// Starts `datastorage serve` with `args` and `env`, its standard error appended to the file
    /// `log`, and waits until that log names the address it serves on.
    pub async fn start_logging_to(
        args: &[&str],
        env: &[(&str, &str)],
        log: &std::path::Path,
    ) -> ServerProcess {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("the log file opens");
        let mut child = Command::new(env!("CARGO_BIN_EXE_datastorage"))
            .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
            .arg("--create-checkpoint-key")
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .expect("datastorage starts");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let base = loop {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let serving = text.lines().find_map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).ok()?;
                (v["message"] == "datastorage serving")
                    .then(|| v["addr"].as_str().map(str::to_owned))?
            });
            if let Some(addr) = serving {
                break format!("http://{addr}");
            }
            assert!(
                child.try_wait().unwrap().is_none(),
                "datastorage exited: {text}"
            );
            assert!(
                std::time::Instant::now() < deadline,
                "not serving within 60 s: {text}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        ServerProcess {
            child,
            base,
            _data_dir: None,
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

/// A small tmpfs mounted for the test (root only), unmounted when dropped.
pub struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    pub fn mount(bytes: u64) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("mount runs");
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr);
            assert!(
                std::env::var("CI").is_err(),
                "a tmpfs cannot be mounted under CI: {why}"
            );
            eprintln!("SKIPPED: cannot mount a tmpfs (needs root): {why}");
            return None;
        }
        Some(SmallDisk { dir })
    }

    pub fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Fills what is left with one file.
    pub fn fill(&self) {
        use std::io::Write;
        let mut f = std::fs::File::create(self.path().join("filler")).unwrap();
        let block = vec![0u8; 64 * 1024];
        loop {
            match f.write_all(&block) {
                Ok(()) => continue,
                Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => break,
                Err(e) => panic!("filling the disk: {e}"),
            }
        }
        // What was left over in a partial block.
        while f.write_all(&[0u8; 512]).is_ok() {}
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazily: a process still holding a file there does not keep it mounted.
        let _ = std::process::Command::new("umount")
            .arg("--lazy")
            .arg(self.dir.path())
            .status();
    }
}
