//! The durable read cursor: the id of the first record not yet acknowledged.
//!
//! Written to `cursor.tmp`, fsynced, renamed over `cursor`, then the directory is fsynced, so the
//! file is always either the old or the new cursor, never a mix.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use crate::JournalError;

const FILE: &str = "cursor";
const TMP: &str = "cursor.tmp";

/// Reads the cursor; `None` when no cursor was ever written.
pub fn load(dir: &Path) -> Result<Option<u64>, JournalError> {
    let path = dir.join(FILE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if bytes.len() != 12 {
        return Err(JournalError::Corrupt(format!(
            "{}: {} bytes",
            path.display(),
            bytes.len()
        )));
    }
    let mut v = [0u8; 8];
    v.copy_from_slice(&bytes[..8]);
    let crc = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if crc32c::crc32c(&v) != crc {
        return Err(JournalError::Corrupt(format!(
            "{}: checksum mismatch",
            path.display()
        )));
    }
    Ok(Some(u64::from_le_bytes(v)))
}

/// Makes `value` the durable cursor.
pub fn store(dir: &Path, value: u64) -> Result<(), JournalError> {
    let tmp = dir.join(TMP);
    let mut bytes = value.to_le_bytes().to_vec();
    bytes.extend_from_slice(&crc32c::crc32c(&value.to_le_bytes()).to_le_bytes());
    let mut f = File::create(&tmp)?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, dir.join(FILE))?;
    sync_dir(dir)
}

/// Makes the directory's entries (created, renamed, deleted files) durable.
pub fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir)?.sync_all()?;
    Ok(())
}
