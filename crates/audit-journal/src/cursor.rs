//! The durable read cursor: the id of the first record not yet acknowledged.
//!
//! The `cursor` file holds two slots of 12 bytes (the value, little-endian, and its CRC32C).
//! A new cursor is written in place over the slot that does not hold the newest value, then
//! synced, so moving the cursor needs no new disk space (on a full disk the cursor still moves,
//! and the segments it releases are deleted, which frees space) and a torn write spoils at most
//! the older slot. The file is created whole (temp file, fsync, rename, directory fsync) when
//! the journal opens; a one-slot file of an earlier version is read, and replaced by a two-slot
//! one at that point.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::JournalError;

const FILE: &str = "cursor";
const TMP: &str = "cursor.tmp";
const SLOT: usize = 12;

fn encode(value: u64) -> [u8; SLOT] {
    let mut out = [0u8; SLOT];
    out[..8].copy_from_slice(&value.to_le_bytes());
    out[8..].copy_from_slice(&crc32c::crc32c(&value.to_le_bytes()).to_le_bytes());
    out
}

/// A slot's value, `None` when its checksum does not match (torn or never written).
fn decode(slot: &[u8]) -> Option<u64> {
    let value: [u8; 8] = slot[..8].try_into().ok()?;
    let crc = u32::from_le_bytes(slot[8..SLOT].try_into().ok()?);
    (crc32c::crc32c(&value) == crc).then(|| u64::from_le_bytes(value))
}

/// The file's slots, decoded.
fn slots(dir: &Path) -> Result<Option<Vec<Option<u64>>>, JournalError> {
    let path = dir.join(FILE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if bytes.len() != SLOT && bytes.len() != 2 * SLOT {
        return Err(JournalError::Corrupt(format!(
            "{}: {} bytes",
            path.display(),
            bytes.len()
        )));
    }
    Ok(Some(bytes.chunks(SLOT).map(decode).collect()))
}

/// Reads the cursor; `None` when no cursor was ever written.
pub fn load(dir: &Path) -> Result<Option<u64>, JournalError> {
    let Some(slots) = slots(dir)? else {
        return Ok(None);
    };
    match slots.into_iter().flatten().max() {
        Some(v) => Ok(Some(v)),
        None => Err(JournalError::Corrupt(format!(
            "{}: checksum mismatch",
            dir.join(FILE).display()
        ))),
    }
}

/// Writes a two-slot file holding `value` in both slots (temp file, fsync, rename, directory
/// fsync): at open, where an earlier version's file is replaced, and wherever no file exists.
pub fn create(dir: &Path, value: u64) -> Result<(), JournalError> {
    let tmp = dir.join(TMP);
    let mut f = File::create(&tmp)?;
    f.write_all(&encode(value))?;
    f.write_all(&encode(value))?;
    f.sync_all()?;
    fs::rename(&tmp, dir.join(FILE))?;
    sync_dir(dir)
}

/// Makes sure the two-slot file exists, holding `value` if it has to be written.
pub fn prepare(dir: &Path, value: u64) -> Result<(), JournalError> {
    match slots(dir)? {
        Some(slots) if slots.len() == 2 => Ok(()),
        _ => create(dir, value),
    }
}

/// Makes `value` the durable cursor.
pub fn store(dir: &Path, value: u64) -> Result<(), JournalError> {
    let slots = match slots(dir)? {
        Some(slots) if slots.len() == 2 => slots,
        _ => return create(dir, value),
    };
    // Over the slot that is torn, or holds the older value: the newest stays readable.
    let older = match (slots[0], slots[1]) {
        (None, _) => 0,
        (_, None) => 1,
        (Some(a), Some(b)) => usize::from(b < a),
    };
    let f = OpenOptions::new().write(true).open(dir.join(FILE))?;
    f.write_all_at(&encode(value), (older * SLOT) as u64)?;
    f.sync_data()?;
    Ok(())
}

/// Makes the directory's entries (created, renamed, deleted files) durable.
pub fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_moves_in_place_and_a_torn_slot_leaves_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), None);
        prepare(dir.path(), 0).unwrap();
        let inode = |d: &Path| {
            use std::os::unix::fs::MetadataExt;
            fs::metadata(d.join(FILE)).unwrap().ino()
        };
        let before = inode(dir.path());
        for v in [5u64, 9, 12, 40] {
            store(dir.path(), v).unwrap();
            assert_eq!(load(dir.path()).unwrap(), Some(v));
        }
        // Written in place: the same file, the same size.
        assert_eq!(inode(dir.path()), before);
        assert_eq!(fs::metadata(dir.path().join(FILE)).unwrap().len(), 24);
        // The older slot (12) torn: 40 is still read; the next store goes over the torn one.
        let mut bytes = fs::read(dir.path().join(FILE)).unwrap();
        let older = if decode(&bytes[..SLOT]) == Some(12) {
            0
        } else {
            SLOT
        };
        bytes[older + 3] ^= 0xff;
        fs::write(dir.path().join(FILE), &bytes).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(40));
        store(dir.path(), 41).unwrap();
        let bytes = fs::read(dir.path().join(FILE)).unwrap();
        assert_eq!(decode(&bytes[older..older + SLOT]), Some(41));
        assert_eq!(load(dir.path()).unwrap(), Some(41));
        // Both torn: corruption, never a guess.
        fs::write(dir.path().join(FILE), [0u8; 24]).unwrap();
        assert!(matches!(load(dir.path()), Err(JournalError::Corrupt(_))));
    }

    #[test]
    fn an_earlier_one_slot_file_is_read_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(FILE), encode(77)).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(77));
        prepare(dir.path(), 77).unwrap();
        assert_eq!(fs::metadata(dir.path().join(FILE)).unwrap().len(), 24);
        assert_eq!(load(dir.path()).unwrap(), Some(77));
        store(dir.path(), 80).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(80));
    }
}
