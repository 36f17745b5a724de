//! Files the service reads again when they change, without a restart: the tokens file and the
//! TLS certificate, key and client CA (cert-manager and the kubelet replace a mounted Secret's
//! files by swapping a symbolic link, which changes the target's inode).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How often a watched file is checked for a change.
pub const RELOAD_EVERY: Duration = Duration::from_secs(1);

/// What identifies a version of a file (a change to any of them is a change).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    modified: Option<std::time::SystemTime>,
    len: u64,
    inode: u64,
}

/// The stamp of the file `path` names (through symbolic links).
pub fn stamp(path: &Path) -> std::io::Result<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)?;
    Ok(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode: meta.ino(),
    })
}

/// Something read from files and read again when they change.
pub trait Reloadable: Send + Sync + 'static {
    /// What it is, for the log.
    fn what(&self) -> String;
    /// Its kind, for the metric's label (`tokens`, `tls`).
    fn kind(&self) -> &'static str;
    /// Reads the files again if they changed; `Ok(true)` when they were read. On an error
    /// what was read before stays in force.
    fn reload_if_changed(&self) -> Result<bool, String>;
}

/// Keeps `it` current with its files until `stop` resolves.
pub async fn watch<R: Reloadable>(it: Arc<R>, stop: impl std::future::Future<Output = ()>) {
    let mut tick = tokio::time::interval(RELOAD_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = tick.tick() => match it.reload_if_changed() {
                Ok(true) => tracing::info!(what = it.what(), "changed; the new version is in force"),
                Ok(false) => {}
                Err(error) => {
                    metrics::counter!(crate::metrics::RELOAD_FAILURES, "file" => it.kind()).increment(1);
                    tracing::error!(
                        what = it.what(),
                        %error,
                        "changed but cannot be used; the version read before stays in force"
                    );
                }
            },
        }
    }
}
