//! The journal's invariants, including crashes between its steps.

use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use audit_journal::{Journal, JournalError, JournalOptions};

fn small_segments() -> JournalOptions {
    JournalOptions {
        segment_bytes: 1024,
    }
}

fn payload(i: u64) -> Vec<u8> {
    format!("record-{i}-{}", "x".repeat((i % 50) as usize)).into_bytes()
}

fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn appends_read_back_in_order_across_segments_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), small_segments()).unwrap();
    for i in 0..200 {
        assert_eq!(j.append(payload(i)).await.unwrap(), i);
    }
    assert!(j.segment_count() > 3, "small segments roll");
    let all = j.read(0, 1000).unwrap();
    assert_eq!(all.len(), 200);
    for (i, (id, p)) in all.iter().enumerate() {
        assert_eq!((*id, p.clone()), (i as u64, payload(i as u64)));
    }
    drop(j);
    let j = Journal::open(dir.path(), small_segments()).unwrap();
    assert_eq!((j.cursor(), j.next_id(), j.len()), (0, 200, 200));
    assert_eq!(j.read(150, 10).unwrap()[0], (150, payload(150)));
    assert_eq!(j.append(payload(200)).await.unwrap(), 200);
}

#[tokio::test]
async fn ack_moves_the_cursor_durably_and_deletes_passed_segments() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), small_segments()).unwrap();
    for i in 0..200 {
        j.append(payload(i)).await.unwrap();
    }
    let before = segments(dir.path()).len();
    j.ack_through(149).unwrap();
    assert_eq!((j.cursor(), j.len()), (150, 50));
    assert!(
        segments(dir.path()).len() < before,
        "passed segments are deleted"
    );
    assert_eq!(
        j.read(0, 1).unwrap()[0].0,
        150,
        "acknowledged records are not read again"
    );
    drop(j);
    let j = Journal::open(dir.path(), small_segments()).unwrap();
    assert_eq!((j.cursor(), j.len()), (150, 50));
    j.ack_through(199).unwrap();
    assert!(j.is_empty());
    assert!(matches!(j.ack_through(500), Err(JournalError::Corrupt(_))));
}

#[tokio::test]
async fn a_crash_between_cursor_write_and_deletion_is_finished_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), small_segments()).unwrap();
    for i in 0..100 {
        j.append(payload(i)).await.unwrap();
    }
    let kept = segments(dir.path());
    j.ack_through(89).unwrap();
    drop(j);
    // Put back the deleted segments, as if the process died right after the cursor was written.
    let survivors = segments(dir.path());
    assert!(survivors.len() < kept.len());
    let j2dir = tempfile::tempdir().unwrap();
    let j2 = Journal::open(j2dir.path(), small_segments()).unwrap();
    for i in 0..100 {
        j2.append(payload(i)).await.unwrap();
    }
    drop(j2);
    for path in &kept {
        if !survivors.contains(path) {
            fs::copy(j2dir.path().join(path.file_name().unwrap()), path).unwrap();
        }
    }
    let j = Journal::open(dir.path(), small_segments()).unwrap();
    assert!(j.recovery().deleted_segments > 0);
    assert_eq!(segments(dir.path()), survivors);
    assert_eq!(j.read(0, 100).unwrap().len(), 10);
}

#[tokio::test]
async fn concurrent_appends_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let j = j.clone();
            tokio::spawn(async move { j.append(payload(i)).await.unwrap() })
        })
        .collect();
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    ids.sort_unstable();
    assert_eq!(ids, (0..200).collect::<Vec<_>>());
    assert!(
        j.fsync_count() < 200,
        "{} fsyncs for 200 appends",
        j.fsync_count()
    );
}

#[tokio::test]
async fn a_corrupted_tail_record_is_cut_and_never_read() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    for i in 0..10 {
        j.append(payload(i)).await.unwrap();
    }
    drop(j);
    let seg = segments(dir.path()).pop().unwrap();
    let mut bytes = fs::read(&seg).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x40;
    fs::write(&seg, &bytes).unwrap();
    let j = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    assert!(j
        .recovery()
        .torn_tail
        .as_deref()
        .unwrap()
        .contains("checksum"));
    let got = j.read(0, 100).unwrap();
    assert_eq!(got.len(), 9);
    assert_eq!(got[8], (8, payload(8)));
    assert_eq!(j.append(b"after".to_vec()).await.unwrap(), 9);
    assert_eq!(j.read(9, 1).unwrap()[0].1, b"after");
}

#[tokio::test]
async fn every_truncation_of_the_last_segment_recovers_a_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    for i in 0..5 {
        j.append(payload(i)).await.unwrap();
    }
    drop(j);
    let seg = segments(dir.path()).pop().unwrap();
    let whole = fs::read(&seg).unwrap();
    for cut in 0..whole.len() {
        let copy = tempfile::tempdir().unwrap();
        fs::write(copy.path().join(seg.file_name().unwrap()), &whole[..cut]).unwrap();
        let j = Journal::open(copy.path(), JournalOptions::default()).unwrap();
        let got = j.read(0, 10).unwrap();
        for (i, (id, p)) in got.iter().enumerate() {
            assert_eq!(
                (*id, p.clone()),
                (i as u64, payload(i as u64)),
                "cut at {cut}"
            );
        }
        assert_eq!(j.next_id(), got.len() as u64);
    }
}

#[tokio::test]
async fn a_truncated_sealed_segment_is_reported_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), small_segments()).unwrap();
    for i in 0..100 {
        j.append(payload(i)).await.unwrap();
    }
    drop(j);
    let sealed = segments(dir.path())[0].clone();
    let f = OpenOptions::new().write(true).open(&sealed).unwrap();
    f.set_len(f.metadata().unwrap().len() - 5).unwrap();
    match Journal::open(dir.path(), small_segments()) {
        Err(JournalError::Corrupt(msg)) => assert!(msg.contains("sealed"), "{msg}"),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a damaged sealed segment was accepted"),
    }
}

const CHILD_DIR: &str = "AUDIT_JOURNAL_CRASH_CHILD_DIR";

/// Run as a child process by the test below: appends forever from several tasks, printing each
/// acknowledged id; the parent kills it with SIGKILL.
#[tokio::test]
async fn crash_child_appender() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let j = Journal::open(&dir, small_segments()).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for _ in 0..4 {
        let (j, tx) = (j.clone(), tx.clone());
        tokio::spawn(async move {
            loop {
                // The payload is derived from the id the record will get, checked by the parent.
                let id = j.append(b"pending".to_vec()).await.unwrap();
                tx.send(id).unwrap();
            }
        });
    }
    let mut out = std::io::stdout().lock();
    while let Some(id) = rx.recv().await {
        writeln!(out, "acked {id}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn sigkill_mid_append_loses_no_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..3 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash_child_appender",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD_DIR, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut acked = Vec::new();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        while acked.len() < 300 {
            let Some(Ok(line)) = lines.next() else {
                panic!("child stopped early")
            };
            if let Some(id) = line.strip_prefix("acked ") {
                acked.push(id.parse::<u64>().unwrap());
            }
        }
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        child.wait().unwrap();

        let j = Journal::open(dir.path(), small_segments()).unwrap();
        let all = j.read(0, usize::MAX).unwrap();
        let ids: Vec<u64> = all.iter().map(|(id, _)| *id).collect();
        assert_eq!(
            ids,
            (0..ids.len() as u64).collect::<Vec<_>>(),
            "round {round}: ids contiguous"
        );
        assert!(
            all.iter().all(|(_, p)| p == b"pending"),
            "round {round}: no garbage read"
        );
        let max_acked = *acked.iter().max().unwrap();
        assert!(
            (max_acked as usize) < ids.len(),
            "round {round}: acknowledged record {max_acked} lost (journal holds {})",
            ids.len()
        );
    }
}
