//! The `audit-witness` binary as a process: HTTPS with a certificate made in the test and read
//! again when renewed, bearer tokens for submitters, and its state kept across a SIGKILL.

use std::path::Path;
use std::time::Duration;

use audit_model::checkpoint::{Checkpoint, CheckpointSigner};
use audit_model::merkle::{consistency_proof, leaf_hash, root, Hash};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use test_pki::TestCa;

mod common;

const TOKEN: &str = "submitter-token-of-the-test";

/// A running witness and where it listens.
struct Process {
    child: tokio::process::Child,
    url: String,
}

async fn start(dir: &Path, log: &CheckpointSigner, port: u16) -> Process {
    let tls: Vec<std::ffi::OsString> = vec![
        "--tls-cert-file".into(),
        dir.join("server.crt").into(),
        "--tls-key-file".into(),
        dir.join("server.key").into(),
        "--submitters-file".into(),
        dir.join("submitters").into(),
    ];
    let p = common::serve(dir, &log.verifier().to_text(), port, &tls).await;
    Process {
        child: p.child,
        url: format!("https://localhost:{}", p.port),
    }
}

fn client(ca: &TestCa) -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap())
        .build()
        .unwrap()
}

fn submission(log: &CheckpointSigner, leaves: &[Hash], old: usize, new: usize) -> (String, String) {
    let note = log.sign(&Checkpoint {
        origin: log.name().to_string(),
        tree_size: new as u64,
        root_hash: root(&leaves[..new]),
        timestamp: chrono::Utc::now(),
    });
    let mut body = format!("old {old}\n");
    if old > 0 {
        for h in consistency_proof(&leaves[..new], old as u64).unwrap() {
            body.push_str(&B64.encode(h));
            body.push('\n');
        }
    }
    body.push('\n');
    body.push_str(&note);
    (body, note)
}

async fn post(
    client: &reqwest::Client,
    p: &Process,
    body: &str,
    token: Option<&str>,
) -> reqwest::Result<(u16, String)> {
    let mut request = client
        .post(format!("{}/add-checkpoint", p.url))
        .body(body.to_string());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let r = request.send().await?;
    let status = r.status().as_u16();
    Ok((status, r.text().await?))
}

#[tokio::test]
async fn the_witness_process_serves_https_to_its_submitters_and_keeps_its_state() {
    let dir = tempfile::tempdir().unwrap();
    let verifier = common::keygen(dir.path(), "witness.test/process");
    let ca = TestCa::new("witness test CA");
    ca.server(&["localhost", "127.0.0.1"])
        .write(dir.path(), "server");
    use sha2::Digest;
    std::fs::write(
        dir.path().join("submitters"),
        format!(
            "# the log's submitter\n{}\n",
            hex::encode(sha2::Sha256::digest(TOKEN.as_bytes()))
        ),
    )
    .unwrap();
    let log = CheckpointSigner::from_seed("kubernaut.ai/audit", [31; 32]).unwrap();
    let leaves: Vec<Hash> = (0..20)
        .map(|i| leaf_hash(format!("e{i}").as_bytes()))
        .collect();
    let mut p = start(dir.path(), &log, 0).await;
    let https = client(&ca);

    // No token, or a wrong one: 401, nothing cosigned.
    let (body, note) = submission(&log, &leaves, 0, 5);
    assert_eq!(post(&https, &p, &body, None).await.unwrap().0, 401);
    assert_eq!(post(&https, &p, &body, Some("guess")).await.unwrap().0, 401);
    let (status, line) = post(&https, &p, &body, Some(TOKEN)).await.unwrap();
    assert_eq!(status, 200, "{line}");
    assert!(verifier.cosigned_at(&format!("{note}{line}")).is_some());
    // Its metrics count that, each family with its HELP text.
    let metrics = https
        .get(format!("{}/metrics", p.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("witness_add_checkpoint_requests_total{outcome=\"cosigned\"} 1"),
        "{metrics}"
    );
    for family in [
        "witness_add_checkpoint_requests_total",
        "witness_cosigned_tree_size",
    ] {
        assert!(metrics.contains(&format!("# HELP {family} ")), "{metrics}");
    }
    // A client that does not trust the witness's CA is refused by TLS.
    let stranger = client(&TestCa::new("another CA"));
    assert!(post(&stranger, &p, &body, Some(TOKEN)).await.is_err());

    // The certificate is renewed by another CA: new connections get it, without a restart.
    let renewed = TestCa::new("renewed CA");
    renewed
        .server(&["localhost", "127.0.0.1"])
        .write(dir.path(), "server");
    let fresh = client(&renewed);
    let (body, _) = submission(&log, &leaves, 5, 9);
    let mut answered = None;
    for _ in 0..100 {
        if let Ok(answer) = post(&fresh, &p, &body, Some(TOKEN)).await {
            answered = Some(answer);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(answered.expect("the renewed certificate is served").0, 200);

    // Killed without warning and started again on its state: it remembers size 9.
    let port: u16 = p.url.rsplit(':').next().unwrap().parse().unwrap();
    p.child.kill().await.unwrap();
    let p = start(dir.path(), &log, port).await;
    let (body, _) = submission(&log, &leaves, 0, 12);
    assert_eq!(
        post(&fresh, &p, &body, Some(TOKEN)).await.unwrap(),
        (409, "9\n".to_string())
    );
    let (body, _) = submission(&log, &leaves, 9, 12);
    assert_eq!(post(&fresh, &p, &body, Some(TOKEN)).await.unwrap().0, 200);
}
