//! The witness against the C2SP `tlog-witness` rules, over HTTP, on SQLite and PostgreSQL: every
//! answer the specification names, concurrent submissions, a restart, and a forked log.

use std::sync::Arc;

use audit_model::checkpoint::{Checkpoint, CheckpointSigner};
use audit_model::cosignature::{CosignatureVerifier, Cosigner};
use audit_model::merkle::{consistency_proof, leaf_hash, root, Hash};
use audit_witness::state::State;
use audit_witness::Witness;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

const ORIGIN: &str = "kubernaut.ai/audit";

/// A log made in the test: its leaves and its key.
struct Log {
    leaves: Vec<Hash>,
    signer: CheckpointSigner,
}

impl Log {
    fn new(seed: u8, tag: &str, size: usize) -> Log {
        Log {
            leaves: (0..size)
                .map(|i| leaf_hash(format!("{tag}-{i}").as_bytes()))
                .collect(),
            signer: CheckpointSigner::from_seed(ORIGIN, [seed; 32]).unwrap(),
        }
    }

    /// The signed checkpoint of its first `size` leaves.
    fn note(&self, size: usize) -> String {
        self.signer.sign(&Checkpoint {
            origin: ORIGIN.into(),
            tree_size: size as u64,
            root_hash: root(&self.leaves[..size]),
            timestamp: chrono::Utc::now(),
        })
    }

    /// An `add-checkpoint` body from `old` to `new`.
    fn submission(&self, old: usize, new: usize) -> String {
        self.submission_of(old, new, &self.note(new))
    }

    /// An `add-checkpoint` body from `old` to `new`, the signed checkpoint `note`.
    fn submission_of(&self, old: usize, new: usize, note: &str) -> String {
        let proof = if old == 0 {
            Vec::new()
        } else {
            consistency_proof(&self.leaves[..new], old as u64).unwrap()
        };
        let mut body = format!("old {old}\n");
        for hash in proof {
            body.push_str(&B64.encode(hash));
            body.push('\n');
        }
        body.push('\n');
        body.push_str(note);
        body
    }
}

/// A witness serving over HTTP, and its verifier key.
struct Running {
    url: String,
    verifier: CosignatureVerifier,
    state: State,
    _server: tokio::task::JoinHandle<()>,
}

async fn serve(state: State, log: &Log) -> Running {
    let cosigner = Cosigner::from_seed("witness.test/w1", [77; 32]).unwrap();
    let verifier = cosigner.verifier();
    let witness = Arc::new(Witness::new(
        cosigner,
        vec![log.signer.verifier()],
        state.clone(),
    ));
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .build_recorder()
        .handle();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = audit_witness::router(witness, metrics);
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Running {
        url,
        verifier,
        state,
        _server: server,
    }
}

async fn submit(w: &Running, body: &str) -> (u16, String, String) {
    let r = reqwest::Client::new()
        .post(format!("{}/add-checkpoint", w.url))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let content_type = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, content_type, r.text().await.unwrap())
}

/// A PostgreSQL database of one test, dropped with it.
struct Database(Option<String>);

impl Drop for Database {
    fn drop(&mut self) {
        let Some(name) = self.0.take() else {
            return;
        };
        // Drop runs inside the test's runtime; use a thread with its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let admin = sqlx::PgPool::connect(ADMIN).await.ok()?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&admin)
                    .await
                    .ok()
            })
        })
        .join();
    }
}

const ADMIN: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A fresh state database of `kind`, or `None` (a loud skip outside CI) without PostgreSQL.
async fn fresh_state(kind: &str, dir: &tempfile::TempDir) -> Option<(State, Database)> {
    match kind {
        "sqlite" => Some((
            State::open(&State::default_url(dir.path())).await.unwrap(),
            Database(None),
        )),
        _ => {
            let pool = match sqlx::PgPool::connect(ADMIN).await {
                Ok(pool) => pool,
                Err(e) => {
                    assert!(
                        std::env::var("CI").is_err(),
                        "PostgreSQL is required under CI: {e}"
                    );
                    eprintln!("\n*** SKIPPED: PostgreSQL is not reachable ({e}) ***\n");
                    return None;
                }
            };
            let name = format!("witness_{}", uuid::Uuid::new_v4().simple());
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&pool)
                .await
                .unwrap();
            let state = State::open(&format!("postgres://postgres@127.0.0.1:5432/{name}"))
                .await
                .unwrap();
            Some((state, Database(Some(name))))
        }
    }
}

async fn every_answer_of_the_specification(kind: &str) {
    let dir = tempfile::tempdir().unwrap();
    let Some((state, _database)) = fresh_state(kind, &dir).await else {
        return;
    };
    let log = Log::new(1, "a", 40);
    let w = serve(state, &log).await;

    // First contact: old 0, an empty proof.
    let (status, _, line) = submit(&w, &log.submission(0, 5)).await;
    assert_eq!(status, 200, "{line}");
    assert!(line.starts_with("— witness.test/w1 ") && line.ends_with('\n'));
    // Appended to the checkpoint it was asked for, it is a valid cosignature of it.
    let note = log.note(6);
    let (status, _, line) = submit(&w, &log.submission_of(5, 6, &note)).await;
    assert_eq!(status, 200, "{line}");
    assert!(w.verifier.cosigned_at(&format!("{note}{line}")).is_some());
    assert!(w
        .verifier
        .cosigned_at(&format!("{}{line}", log.note(7)))
        .is_none());
    assert_eq!(w.state.get(ORIGIN).await.unwrap().unwrap().tree_size, 6);

    // A stale old size: 409 with the witness's size.
    let (status, content_type, size) = submit(&w, &log.submission(0, 8)).await;
    assert_eq!(
        (status, content_type.as_str(), size.as_str()),
        (409, "text/x.tlog.size", "6\n")
    );
    // From the witness's size with a valid proof: cosigned.
    let (status, _, _) = submit(&w, &log.submission(6, 8)).await;
    assert_eq!(status, 200);
    // The same size again, same root: cosigned again; nothing moves.
    let (status, _, _) = submit(&w, &log.submission(8, 8)).await;
    assert_eq!(status, 200);

    // A proof that does not verify: 422, the state stays.
    let mut wrong = log.submission(8, 12);
    let first_proof_line = wrong.lines().nth(1).unwrap().to_string();
    wrong = wrong.replacen(&first_proof_line, &B64.encode([0u8; 32]), 1);
    let (status, _, _) = submit(&w, &wrong).await;
    assert_eq!(status, 422);
    assert_eq!(w.state.get(ORIGIN).await.unwrap().unwrap().tree_size, 8);

    // A fork: the same key signs another history of the same size.
    let forked = Log::new(1, "b", 40);
    let (status, content_type, size) = submit(&w, &forked.submission(8, 8)).await;
    assert_eq!(
        (status, content_type.as_str(), size.as_str()),
        (409, "text/x.tlog.size", "8\n")
    );
    // ... or grows another history from the witnessed size: its proof cannot verify.
    let (status, _, _) = submit(&w, &forked.submission(8, 20)).await;
    assert_eq!(status, 422);
    let refusals = w.state.refusals().await.unwrap();
    assert_eq!(refusals.len(), 3, "{refusals:?}");
    assert!(refusals.iter().all(|r| r.origin == ORIGIN));

    // Signed by another key: 403. An unknown origin: 404. An old size above the new: 400.
    let stranger = Log {
        leaves: log.leaves.clone(),
        signer: CheckpointSigner::from_seed(ORIGIN, [9; 32]).unwrap(),
    };
    assert_eq!(submit(&w, &stranger.submission(8, 12)).await.0, 403);
    let elsewhere = Log {
        leaves: log.leaves.clone(),
        signer: CheckpointSigner::from_seed("example.com/other", [1; 32]).unwrap(),
    };
    let mut body = elsewhere.submission(0, 3);
    body = body.replace(ORIGIN, "example.com/other");
    assert_eq!(submit(&w, &body).await.0, 404);
    let above = log.submission(8, 12).replacen("old 8", "old 13", 1);
    assert_eq!(submit(&w, &above).await.0, 400);
    assert_eq!(submit(&w, "garbage").await.0, 400);
    assert_eq!(w.state.get(ORIGIN).await.unwrap().unwrap().tree_size, 8);
}

#[tokio::test]
async fn sqlite_every_answer_of_the_specification() {
    every_answer_of_the_specification("sqlite").await;
}

#[tokio::test]
async fn postgres_every_answer_of_the_specification() {
    every_answer_of_the_specification("postgres").await;
}

async fn concurrent_submissions_advance_once(kind: &str) {
    let dir = tempfile::tempdir().unwrap();
    let Some((state, _database)) = fresh_state(kind, &dir).await else {
        return;
    };
    let log = Log::new(2, "c", 60);
    let w = Arc::new(serve(state, &log).await);
    assert_eq!(submit(&w, &log.submission(0, 10)).await.0, 200);
    // Twenty requests from size 10 at once, to sizes 11..=30: one wins, the rest get 409.
    let tasks: Vec<_> = (11..=30)
        .map(|n| {
            let (w, body) = (w.clone(), log.submission(10, n));
            tokio::spawn(async move { (n, submit(&w, &body).await) })
        })
        .collect();
    let mut won = Vec::new();
    for t in tasks {
        let (n, (status, _, _)) = t.await.unwrap();
        match status {
            200 => won.push(n),
            409 => {}
            other => panic!("size {n}: {other}"),
        }
    }
    assert_eq!(won.len(), 1, "{won:?}");
    assert_eq!(
        w.state.get(ORIGIN).await.unwrap().unwrap().tree_size,
        won[0] as u64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_concurrent_submissions_advance_once() {
    concurrent_submissions_advance_once("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_concurrent_submissions_advance_once() {
    concurrent_submissions_advance_once("postgres").await;
}

#[tokio::test]
async fn the_state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::new(3, "d", 20);
    {
        let state = State::open(&State::default_url(dir.path())).await.unwrap();
        let w = serve(state, &log).await;
        assert_eq!(submit(&w, &log.submission(0, 7)).await.0, 200);
    }
    let state = State::open(&State::default_url(dir.path())).await.unwrap();
    let w = serve(state, &log).await;
    let (status, _, size) = submit(&w, &log.submission(0, 9)).await;
    assert_eq!((status, size.as_str()), (409, "7\n"));
    assert_eq!(submit(&w, &log.submission(7, 9)).await.0, 200);
}
