//! A real SMTP server on loopback (Python's aiosmtpd with its Maildir handler), started per test.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

pub struct SmtpServer {
    pub port: u16,
    pub maildir: tempfile::TempDir,
    _child: Child,
}

impl SmtpServer {
    /// Starts aiosmtpd and waits until it accepts connections; None (with a loud message) when
    /// aiosmtpd is missing outside CI.
    pub async fn start() -> Option<SmtpServer> {
        // The Debian package installs for the system interpreter, which may not be first on PATH.
        let python = ["python3", "/usr/bin/python3"].into_iter().find(|p| {
            std::process::Command::new(p)
                .args(["-c", "import aiosmtpd"])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        let Some(python) = python else {
            let msg = "python3 with aiosmtpd (Debian: python3-aiosmtpd) is required for the email channel test";
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{msg}");
            }
            eprintln!("SKIPPED: {msg}");
            return None;
        };
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let maildir = tempfile::tempdir().unwrap();
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir(maildir.path().join(sub)).unwrap();
        }
        let child = Command::new(python)
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let ready = tokio::time::timeout(Duration::from_secs(30), async {
            while tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err()
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(ready.is_ok(), "aiosmtpd did not start listening on {port}");
        Some(SmtpServer {
            port,
            maildir,
            _child: child,
        })
    }

    /// The messages delivered so far, as raw RFC 5322 text.
    pub fn messages(&self) -> Vec<String> {
        let new: PathBuf = self.maildir.path().join("new");
        let Ok(entries) = std::fs::read_dir(new) else {
            return vec![];
        };
        entries
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .collect()
    }
}
