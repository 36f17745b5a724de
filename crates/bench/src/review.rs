//! A stand-in for the Kubernetes API server in the authentication scenario: it authenticates
//! one ServiceAccount token (TokenReview) and allows that account everything it is asked
//! (SubjectAccessReview), so the service under load runs its real Kubernetes authenticator, whose
//! cached answers are what is measured.

use std::path::{Path, PathBuf};

use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

/// The token the stand-in knows, and whose it is.
pub const TOKEN: &str = "bench-service-account-token";
pub const USER: &str = "system:serviceaccount:kubernaut-system:bench";

async fn token_review(Json(mut review): Json<Value>) -> (axum::http::StatusCode, Json<Value>) {
    let known = review["spec"]["token"] == TOKEN;
    review["status"] = if known {
        json!({"authenticated": true, "audiences": ["datastorage"],
               "user": {"username": USER, "groups": ["system:serviceaccounts"]}})
    } else {
        json!({"authenticated": false})
    };
    (axum::http::StatusCode::CREATED, Json(review))
}

async fn access_review(Json(mut review): Json<Value>) -> (axum::http::StatusCode, Json<Value>) {
    review["status"] = json!({"allowed": review["spec"]["user"] == USER});
    (axum::http::StatusCode::CREATED, Json(review))
}

/// Starts the stand-in on a free loopback port (it serves until the process ends) and writes a
/// kubeconfig for it into `dir`.
pub async fn start(dir: &Path) -> anyhow::Result<PathBuf> {
    let router = Router::new()
        .route(
            "/apis/authentication.k8s.io/v1/tokenreviews",
            post(token_review),
        )
        .route(
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            post(access_review),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, router).await });
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: bench\n\
             clusters:\n- name: bench\n  cluster:\n    server: {url}\n\
             contexts:\n- name: bench\n  context:\n    cluster: bench\n    user: datastorage\n\
             users:\n- name: datastorage\n  user:\n    token: datastorage\n"
        ),
    )?;
    Ok(kubeconfig)
}
