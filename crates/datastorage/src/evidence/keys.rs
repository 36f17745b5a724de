//! The checkpoint signing key on disk.
//!
//! The key file holds the signed-note signer key (`PRIVATE+KEY+…`, see
//! [`audit_model::checkpoint`]) on one line. `datastorage keygen` writes a new one (never over an
//! existing file, readable by the owner only); `serve` refuses to start without a readable key
//! unless checkpoints are disabled, or it is told to create a missing one.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context};
use audit_model::checkpoint::CheckpointSigner;

/// A new key named `origin`, from the operating system's random source.
pub fn generate(origin: &str) -> anyhow::Result<CheckpointSigner> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no randomness for a key: {e}"))?;
    Ok(CheckpointSigner::from_seed(origin, seed)?)
}

/// Writes `signer` to a new file at `path` (mode 0600); refuses to replace an existing key.
pub fn write_new(path: &Path, signer: &CheckpointSigner) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create the key file {}", path.display()))?;
    writeln!(file, "{}", signer.to_text())?;
    file.sync_all()?;
    Ok(())
}

/// Reads the key at `path`; when it is missing and `create` is set, makes one named `origin`.
pub fn load(path: &Path, create: bool, origin: &str) -> anyhow::Result<CheckpointSigner> {
    match std::fs::read_to_string(path) {
        Ok(text) => CheckpointSigner::parse(&text)
            .with_context(|| format!("the checkpoint key {} is not valid", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
            let signer = generate(origin)?;
            if let Err(error) = write_new(path, &signer) {
                // Another replica created it first: use that one.
                if path.exists() {
                    return load(path, false, origin);
                }
                return Err(error);
            }
            tracing::warn!(path = %path.display(), key_id = %signer.key_id(), "created a new checkpoint signing key");
            Ok(signer)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "no checkpoint signing key at {}: create one with `datastorage keygen --out {}`, \
             or start with --create-checkpoint-key, or disable checkpoints with --checkpoints disabled",
            path.display(),
            path.display()
        ),
        Err(e) => Err(e).with_context(|| format!("cannot read the checkpoint key {}", path.display())),
    }
}
