//! Kubernetes ServiceAccount tokens, against an in-process API server that answers TokenReview
//! and SubjectAccessReview as a real one does: the principal and its roles come from the
//! reviews, answers are cached, and during an outage a cached token keeps working until its
//! answer expires while an uncached one is answered 503 (retry), never let in.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::helpers::{
    event, eventually, native_client_with, spawn_app_with, AppOptions, Backend, TestApp,
};

const NC: &str = "system:serviceaccount:kubernaut:notification-controller";
const AUDITOR: &str = "system:serviceaccount:kubernaut:auditor";

/// What the fake API server knows.
#[derive(Default)]
struct Cluster {
    /// token → (user, audience it was issued for)
    tokens: Mutex<HashMap<String, (String, String)>>,
    /// (user, verb, resource) allowed
    allowed: Mutex<HashSet<(String, String, String)>>,
    token_reviews: AtomicUsize,
    access_reviews: AtomicUsize,
    down: AtomicBool,
}

async fn token_review(
    State(c): State<Arc<Cluster>>,
    Json(mut review): Json<Value>,
) -> (StatusCode, Json<Value>) {
    if c.down.load(Ordering::SeqCst) {
        return unavailable();
    }
    c.token_reviews.fetch_add(1, Ordering::SeqCst);
    let token = review["spec"]["token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let audiences = review["spec"]["audiences"].clone();
    let known = c.tokens.lock().unwrap().get(&token).cloned();
    review["status"] = match known {
        Some((user, audience))
            if audiences
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == audience.as_str())) =>
        {
            json!({"authenticated": true, "audiences": [audience],
                   "user": {"username": user, "uid": "u-1", "groups": ["system:serviceaccounts"]}})
        }
        _ => json!({"authenticated": false, "error": "invalid bearer token"}),
    };
    (StatusCode::CREATED, Json(review))
}

async fn access_review(
    State(c): State<Arc<Cluster>>,
    Json(mut review): Json<Value>,
) -> (StatusCode, Json<Value>) {
    if c.down.load(Ordering::SeqCst) {
        return unavailable();
    }
    c.access_reviews.fetch_add(1, Ordering::SeqCst);
    let spec = &review["spec"];
    let attrs = &spec["resourceAttributes"];
    assert_eq!(attrs["group"], "audit.kubernaut.ai", "{review}");
    assert_eq!(
        spec["groups"],
        json!(["system:serviceaccounts"]),
        "{review}"
    );
    let key = (
        spec["user"].as_str().unwrap_or_default().to_string(),
        attrs["verb"].as_str().unwrap_or_default().to_string(),
        attrs["resource"].as_str().unwrap_or_default().to_string(),
    );
    let allowed = c.allowed.lock().unwrap().contains(&key);
    review["status"] = json!({"allowed": allowed});
    (StatusCode::CREATED, Json(review))
}

fn unavailable() -> (StatusCode, Json<Value>) {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "message": "the API server is down", "reason": "ServiceUnavailable", "code": 503}),
        ),
    )
}

/// Starts the fake API server; returns it and a kubeconfig file that points at it.
async fn api_server(dir: &std::path::Path) -> (Arc<Cluster>, std::path::PathBuf) {
    let cluster = Arc::new(Cluster::default());
    let router = Router::new()
        .route(
            "/apis/authentication.k8s.io/v1/tokenreviews",
            post(token_review),
        )
        .route(
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            post(access_review),
        )
        .with_state(cluster.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: test\n\
             clusters:\n- name: test\n  cluster:\n    server: {url}\n\
             contexts:\n- name: test\n  context:\n    cluster: test\n    user: datastorage\n\
             users:\n- name: datastorage\n  user:\n    token: datastorage-sa-token\n"
        ),
    )
    .unwrap();
    (cluster, kubeconfig)
}

async fn status(app: &TestApp, token: &str, write: bool) -> (u16, Value) {
    let client = native_client_with(Some(token));
    if write {
        app.post_as(&client, "/api/v1/audit/events", &event("rr-k8s"))
            .await
    } else {
        app.get_as(&client, "/api/v1/audit/events").await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_account_tokens_are_reviewed_cached_and_survive_an_outage_until_they_expire() {
    let dir = tempfile::tempdir().unwrap();
    let (cluster, kubeconfig) = api_server(dir.path()).await;
    {
        let mut tokens = cluster.tokens.lock().unwrap();
        tokens.insert("nc-token".into(), (NC.into(), "datastorage".into()));
        tokens.insert(
            "auditor-token".into(),
            (AUDITOR.into(), "datastorage".into()),
        );
        tokens.insert("other-audience".into(), (AUDITOR.into(), "vault".into()));
        tokens.insert("late-token".into(), (AUDITOR.into(), "datastorage".into()));
        let mut allowed = cluster.allowed.lock().unwrap();
        allowed.insert((NC.into(), "create".into(), "events".into()));
        allowed.insert((AUDITOR.into(), "get".into(), "events".into()));
    }
    let Some(app) = spawn_app_with(
        Backend::Sqlite,
        AppOptions {
            kubeconfig: Some(kubeconfig),
            review_cache_ttl: Some("2s".into()),
            write_scopes: Some(vec![format!("{NC}=notification.")]),
            ..AppOptions::default()
        },
    )
    .await
    else {
        return;
    };

    // The controller writes; the event carries its ServiceAccount.
    let (code, stored) = status(&app, "nc-token", true).await;
    assert_eq!(code, 201, "{stored}");
    assert_eq!(stored["submitted_by"], NC);
    assert_eq!(stored["actor_id"], NC);
    // Its scope: no other service's events.
    let mut foreign = event("rr-k8s");
    foreign["event_type"] = json!("workflowexecution.workflow.started");
    let (code, problem) = app
        .post_as(
            &native_client_with(Some("nc-token")),
            "/api/v1/audit/events",
            &foreign,
        )
        .await;
    assert_eq!(code, 403, "{problem}");
    // It may not read (no `get events`); the auditor may, and may not write.
    let (code, problem) = status(&app, "nc-token", false).await;
    assert_eq!((code, &problem["required_role"]), (403, &json!("reader")));
    let (code, page) = status(&app, "auditor-token", false).await;
    assert_eq!(code, 200, "{page}");
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    let (code, _) = status(&app, "auditor-token", true).await;
    assert_eq!(code, 403);
    // Unknown tokens and tokens for another audience are refused.
    for token in ["stolen", "other-audience"] {
        let (code, problem) = status(&app, token, false).await;
        assert_eq!(code, 401, "{token}: {problem}");
    }
    // Each token was reviewed once, each question asked once.
    assert_eq!(cluster.token_reviews.load(Ordering::SeqCst), 4);
    let asked = cluster.access_reviews.load(Ordering::SeqCst);
    assert_eq!(asked, 4, "nc: create, get; auditor: get, create");

    // The API server goes down: a cached token keeps working, an uncached one is told to retry.
    cluster.down.store(true, Ordering::SeqCst);
    let (code, stored) = status(&app, "nc-token", true).await;
    assert_eq!(code, 201, "{stored}");
    let response = native_client_with(Some("late-token"))
        .get(app.url("/api/v1/audit/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    // When the cached answer expires, the cached token is told to retry too: not let in, not
    // refused.
    // (Probed with a read, which it may not do: 403 from the cached answers, nothing written.)
    eventually("the cached review to expire", || async {
        let (code, _) = status(&app, "nc-token", false).await;
        assert!(code == 403 || code == 503, "{code}");
        (code == 503).then_some(())
    })
    .await;
    cluster.down.store(false, Ordering::SeqCst);
    let (code, stored) = status(&app, "late-token", false).await;
    assert_eq!(code, 200, "{stored}");
    // Two controller events stored (the 503s stored nothing), each with its writer.
    assert_eq!(
        app.db
            .scalar(&format!(
                "SELECT count(*) FROM audit_events WHERE submitted_by = '{NC}'"
            ))
            .await,
        2
    );
    assert_eq!(app.db.scalar("SELECT count(*) FROM audit_events").await, 2);
}
