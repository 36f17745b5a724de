//! Two `datastorage` processes on one PostgreSQL keep `seq` unique and gap-free.

use futures::future::join_all;

use crate::child::ServerProcess;
use crate::helpers::{event, Backend, TestDb};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_one_gap_free_log() {
    let Some(db) = TestDb::create(Backend::Postgres).await else {
        return;
    };
    let url = db.url();
    let args = ["--database-url", url.as_str()];
    let (a, b) = tokio::join!(ServerProcess::start(&args), ServerProcess::start(&args));
    let client = reqwest::Client::new();
    let tasks = (0..20).map(|t| {
        let client = client.clone();
        let bases = [a.base.clone(), b.base.clone()];
        tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..100 {
                let base = &bases[(t + i) % 2];
                let mut batch = Vec::new();
                if i % 10 == 0 {
                    for j in 0..10 {
                        batch.push(event(&format!("rr-{t}-{i}-{j}")));
                    }
                    let r = client
                        .post(format!("{base}/api/v1/audit/events/batch"))
                        .json(&batch)
                        .send()
                        .await
                        .unwrap();
                    let v: serde_json::Value = r.json().await.unwrap();
                    seqs.extend(
                        v["results"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|r| r["seq"].as_i64().unwrap()),
                    );
                } else {
                    let r = client
                        .post(format!("{base}/api/v1/audit/events"))
                        .json(&event(&format!("rr-{t}-{i}")))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 201);
                    let v: serde_json::Value = r.json().await.unwrap();
                    seqs.push(v["seq"].as_i64().unwrap());
                }
            }
            seqs
        })
    });
    let mut seqs: Vec<i64> = join_all(tasks)
        .await
        .into_iter()
        .flat_map(|r| r.unwrap())
        .collect();
    seqs.sort_unstable();
    let total = 20 * (90 + 10 * 10);
    assert_eq!(seqs, (1..=total as i64).collect::<Vec<_>>());
    assert_eq!(db.assert_seq_gap_free().await, total as i64);
    drop((a, b));
}
