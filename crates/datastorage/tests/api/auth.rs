//! Authentication and authorization: every route against every kind of credential, writers
//! limited to their event types, the writer recorded in the signed event, the tokens file
//! taken again when it changes.

use std::path::{Path, PathBuf};

use datastorage::auth::policy::{Access, ROUTES};
use datastorage::auth::tokens::{self, TokenEntry};
use datastorage::auth::Role;
use datastorage::config::Switch;
use serde_json::{json, Value};

use crate::helpers::{
    event, eventually, native_client_with, spawn_app_with, AppOptions, Backend, TestApp,
};

/// The tokens of one test: a file and a token per kind of caller.
struct Tokens {
    _dir: tempfile::TempDir,
    path: PathBuf,
    writer: String,
    reader: String,
    admin: String,
    /// A writer of `notification.` events only.
    notification: String,
    expired: String,
}

fn entry(principal: &str, roles: &[Role], scopes: Option<&[&str]>) -> TokenEntry {
    let entry = TokenEntry::new(principal, roles.iter().copied());
    match scopes {
        Some(prefixes) => entry.with_event_types(prefixes.iter().copied()),
        None => entry,
    }
}

fn tokens() -> Tokens {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.yaml");
    let create = |e| tokens::create(&path, e).unwrap();
    let mut expired = entry("retired", &[Role::Writer, Role::Reader, Role::Admin], None);
    expired.expires_at = Some(chrono::Utc::now() - chrono::Duration::minutes(1));
    Tokens {
        writer: create(entry("gateway", &[Role::Writer], None)),
        reader: create(entry("auditor", &[Role::Reader], None)),
        admin: create(entry("ops", &[Role::Admin], None)),
        notification: create(entry(
            "notification-controller",
            &[Role::Writer],
            Some(&["notification."]),
        )),
        expired: create(expired),
        path,
        _dir: dir,
    }
}

async fn app_with(backend: Backend, tokens: &Path, public: bool) -> Option<TestApp> {
    spawn_app_with(
        backend,
        AppOptions {
            tokens_file: Some(tokens.to_path_buf()),
            public_metrics: public,
            public_checkpoints: public,
            ..AppOptions::default()
        },
    )
    .await
}

/// A concrete path of a route template.
fn concrete(template: &str) -> String {
    template
        .replace("{event_id}", "6d2f1d8e-0000-4000-8000-000000000000")
        .replace("{correlation_id}", "rr-matrix")
        .replace("{id}", "x")
        .replace("{file}", "app.js")
}

/// Sends `method path` with `authorization` (a JSON body for POST) and returns the status, the
/// `WWW-Authenticate` header and the body.
async fn call(
    app: &TestApp,
    method: &axum::http::Method,
    path: &str,
    authorization: Option<&str>,
) -> (u16, Option<String>, Value) {
    let method = reqwest::Method::from_bytes(method.as_str().as_bytes()).unwrap();
    let mut request = app.platform.request(method.clone(), app.url(path));
    if method == reqwest::Method::POST {
        request = request.json(&json!({}));
    }
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string());
    // A live event stream never ends: its status and headers are the answer.
    let streaming = response
        .headers()
        .get("content-type")
        .is_some_and(|v| v == "text/event-stream");
    let body = if streaming {
        Value::Null
    } else {
        response.json().await.unwrap_or(Value::Null)
    };
    (status, challenge, body)
}

/// Every operation of the API document has an entry in the access table, and every entry is
/// a route of the service.
#[tokio::test]
async fn every_documented_operation_has_an_access_rule() {
    let doc: Value = serde_json::from_str(&datastorage::http::openapi::document()).unwrap();
    let mut documented = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let Ok(method) = axum::http::Method::from_bytes(method.to_uppercase().as_bytes())
            else {
                continue;
            };
            if method == axum::http::Method::OPTIONS {
                continue;
            }
            documented += 1;
            assert!(
                datastorage::auth::policy::access(&method, path).is_some(),
                "{method} {path} has no access rule"
            );
        }
    }
    // The explorer's pages (`/ui`) are in the table, not in the API's document.
    let api_routes = ROUTES
        .iter()
        .filter(|(_, template, _)| !template.starts_with("/ui"))
        .count();
    assert_eq!(
        documented, api_routes,
        "the table lists routes the document does not"
    );
}

/// The matrix: every route, without a credential, with a malformed, an unknown and an expired
/// one, and with each role. Refusals are RFC 7807 problems (401 with `WWW-Authenticate`, 403
/// naming the role) and change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_each_credential_as_its_rule_says() {
    let t = tokens();
    let Some(app) = app_with(Backend::Sqlite, &t.path, false).await else {
        return;
    };
    let roles = [
        (Role::Writer, &t.writer),
        (Role::Reader, &t.reader),
        (Role::Admin, &t.admin),
    ];
    for (method, template, access) in ROUTES {
        let path = concrete(template);
        let needed = match access {
            Access::Open => None,
            Access::Metrics | Access::Checkpoints => Some(Role::Reader),
            Access::Role(role) => Some(*role),
        };
        let what = format!("{method} {path}");
        let Some(needed) = needed else {
            let (status, _, body) = call(&app, method, &path, None).await;
            assert!(
                ![401, 403, 404, 405].contains(&status),
                "{what}: {status} {body}"
            );
            continue;
        };
        for (credential, error) in [
            (None, None),
            (
                Some("Basic Z2F0ZXdheTpwYXNz".to_string()),
                Some("invalid_request"),
            ),
            (Some("Bearer".to_string()), Some("invalid_request")),
            (
                Some("Bearer dsat_not-a-token".to_string()),
                Some("invalid_token"),
            ),
            (Some(format!("Bearer {}", t.expired)), Some("invalid_token")),
        ] {
            let (status, challenge, body) = call(&app, method, &path, credential.as_deref()).await;
            assert_eq!(status, 401, "{what} with {credential:?}: {body}");
            assert_eq!(body["status"], 401, "{what}: a problem: {body}");
            let challenge = challenge.unwrap_or_else(|| panic!("{what}: no WWW-Authenticate"));
            assert!(
                challenge.starts_with("Bearer realm=\"datastorage\""),
                "{challenge}"
            );
            match error {
                Some(code) => assert!(challenge.contains(code), "{what}: {challenge}"),
                None => assert!(!challenge.contains("error="), "{what}: {challenge}"),
            }
        }
        let (_, _, body) = call(&app, method, &path, Some(&format!("Bearer {}", t.expired))).await;
        assert!(
            body["detail"].as_str().unwrap().contains("expired"),
            "{body}"
        );
        for (role, token) in &roles {
            let allowed = *role == needed || (needed == Role::Reader && *role == Role::Admin);
            let (status, _, body) =
                call(&app, method, &path, Some(&format!("Bearer {token}"))).await;
            if allowed {
                assert!(
                    ![401, 403, 405].contains(&status),
                    "{what} as {role}: {status} {body}"
                );
                let no_route = body["detail"]
                    .as_str()
                    .is_some_and(|d| d.starts_with("no route"));
                assert!(!no_route, "{what} is in the table but not a route");
            } else {
                assert_eq!(status, 403, "{what} as {role}: {body}");
                assert_eq!(body["required_role"], needed.as_str(), "{what}: {body}");
            }
        }
    }
    // Nothing any of them sent was stored (the writes that passed held no event); what the
    // reader and the administrator did is in the access trail, each under its principal.
    assert_eq!(
        app.db
            .scalar("SELECT count(*) FROM audit_events WHERE event_type NOT LIKE 'datastorage.access.%'")
            .await,
        0
    );
    assert_eq!(
        app.db
            .scalar(
                "SELECT count(*) FROM audit_events WHERE event_type = 'datastorage.access.export' \
                 AND actor_id IN ('auditor', 'ops') AND submitted_by = 'datastorage'"
            )
            .await,
        2
    );
    assert_eq!(
        app.db
            .scalar("SELECT count(*) FROM audit_events WHERE event_type = 'datastorage.access.dlq' AND actor_id = 'ops'")
            .await,
        1,
        "the replay (the retry of an unknown dead letter was refused and recorded nothing)"
    );
    assert_eq!(app.db.scalar("SELECT count(*) FROM legal_holds").await, 0);
}

/// With `public_metrics` and `public_checkpoints`, Prometheus, witnesses and auditors fetch
/// those routes without a credential; the rest stays closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_routes_open_only_what_they_name() {
    let t = tokens();
    let Some(app) = app_with(Backend::Sqlite, &t.path, true).await else {
        return;
    };
    for path in [
        "/metrics",
        "/api/v1/audit/checkpoints/public-key",
        "/api/v1/audit/checkpoints",
        "/health/live",
        "/api/v1/openapi.json",
    ] {
        let (status, _, body) = call(&app, &axum::http::Method::GET, path, None).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    let (status, _, _) = call(&app, &axum::http::Method::GET, "/api/v1/audit/events", None).await;
    assert_eq!(status, 401);
}

async fn scoped_writers_and_the_attested_writer(backend: Backend) {
    let t = tokens();
    // Checkpoints public: the log is verified at the end as an auditor fetches them.
    let Some(app) = app_with(backend, &t.path, true).await else {
        return;
    };
    let nc = native_client_with(Some(&t.notification));
    let reader = native_client_with(Some(&t.reader));
    let gateway = native_client_with(Some(&t.writer));

    // In scope, no actor given: the actor is the authenticated writer, and so is submitted_by.
    let (status, stored) = app
        .post_as(&nc, "/api/v1/audit/events", &event("rr-auth"))
        .await;
    assert_eq!(status, 201, "{stored}");
    assert_eq!(stored["submitted_by"], "notification-controller");
    assert_eq!(stored["actor_id"], "notification-controller");
    assert!(stored["received_at"].is_string() && stored["committed_at"].is_string());
    // A writer naming its actor keeps it; submitted_by still says who wrote.
    let mut claimed = event("rr-auth");
    claimed["actor_id"] = json!("gateway-pod-7");
    let (status, other) = app
        .post_as(&gateway, "/api/v1/audit/events", &claimed)
        .await;
    assert_eq!(status, 201, "{other}");
    assert_eq!(
        (&other["actor_id"], &other["submitted_by"]),
        (&json!("gateway-pod-7"), &json!("gateway"))
    );

    // The server sets submitted_by and received_at; a writer that sends them is refused.
    for field in ["submitted_by", "received_at"] {
        let mut forged = event("rr-auth");
        forged[field] = json!("2026-01-01T00:00:00Z");
        let (status, problem) = app.post_as(&nc, "/api/v1/audit/events", &forged).await;
        assert_eq!(status, 400, "{problem}");
        assert!(problem["field_errors"][field].is_string(), "{problem}");
    }

    // Out of scope: 403, nothing stored, on the unified and the typed endpoints.
    let mut foreign = event("rr-auth");
    foreign["event_type"] = json!("workflowexecution.workflow.started");
    foreign["event_category"] = json!("workflowexecution");
    let (status, problem) = app.post_as(&nc, "/api/v1/audit/events", &foreign).await;
    assert_eq!(status, 403, "{problem}");
    assert_eq!(problem["event_type"], "workflowexecution.workflow.started");
    let execution = json!({
        "remediation_id": "rr-auth", "workflow_execution_id": "we-1", "workflow_name": "restart",
        "workflow_version": "v1", "total_steps": 3, "steps_completed": 2, "steps_failed": 1,
        "outcome": "partial_success", "status": "completed"
    });
    let (status, problem) = app
        .post_as(&nc, "/api/v1/audit/executions", &execution)
        .await;
    assert_eq!(status, 403, "{problem}");
    assert_eq!(app.db.scalar("SELECT count(*) FROM audit_events").await, 2);

    // A batch: the item outside the scope is refused with its reason, the others stored.
    let batch = json!([event("rr-batch"), foreign, event("rr-batch")]);
    let (status, answer) = app.post_as(&nc, "/api/v1/audit/events/batch", &batch).await;
    assert_eq!(status, 200, "{answer}");
    let statuses: Vec<&str> = answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["created", "rejected", "created"], "{answer}");
    assert!(
        answer["results"][1]["error"]
            .as_str()
            .unwrap()
            .starts_with("forbidden:"),
        "{answer}"
    );
    // On the platform's answers: 403 naming the item, the others stored.
    let platform = reqwest::Client::new();
    let response = platform
        .post(app.url("/api/v1/audit/events/batch"))
        .bearer_auth(&t.notification)
        .json(&json!([event("rr-platform"), batch[1]]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["refused_items"][0]["index"], 1, "{problem}");
    assert_eq!(problem["stored_event_ids"].as_array().unwrap().len(), 1);
    assert_eq!(app.db.scalar("SELECT count(*) FROM audit_events").await, 5);
    assert_eq!(
        app.db
            .scalar(
                "SELECT count(*) FROM audit_events WHERE submitted_by = 'notification-controller'"
            )
            .await,
        4
    );

    // A retry of a stored event, received again later: the same event, stored once.
    let mut named = event("rr-retry");
    named["event_id"] = json!(uuid::Uuid::new_v4());
    named["event_timestamp"] = json!("2026-12-01T10:00:00.000001Z");
    let (status, first) = app.post_as(&nc, "/api/v1/audit/events", &named).await;
    assert_eq!(status, 201, "{first}");
    let (status, again) = app.post_as(&nc, "/api/v1/audit/events", &named).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["seq"], first["seq"]);
    assert_eq!(again["received_at"], first["received_at"]);

    // Readers filter by the writer.
    let (status, page) = app
        .get_as(&reader, "/api/v1/audit/events?submitted_by=gateway")
        .await;
    assert_eq!(status, 200, "{page}");
    let data = page["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "{page}");
    assert_eq!(data[0]["actor_id"], "gateway-pod-7");

    // The writer and the receipt time are signed with the rest.
    app.assert_log_verifies(6).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_scoped_writers_and_the_attested_writer() {
    scoped_writers_and_the_attested_writer(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_scoped_writers_and_the_attested_writer() {
    scoped_writers_and_the_attested_writer(Backend::Sqlite).await;
}

/// A token added to the file while the service runs is taken without a restart; one removed
/// stops working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tokens_file_is_taken_again_when_it_changes() {
    let t = tokens();
    let Some(app) = app_with(Backend::Sqlite, &t.path, false).await else {
        return;
    };
    let added = tokens::create(&t.path, entry("late-reader", &[Role::Reader], None)).unwrap();
    let client = native_client_with(Some(&added));
    eventually("the new token is accepted", || {
        let (client, url) = (client.clone(), app.url("/api/v1/audit/events"));
        async move {
            let status = client.get(url).send().await.ok()?.status();
            (status == 200).then_some(())
        }
    })
    .await;
    // The file rewritten without the reader's entry: its token is refused.
    let text = std::fs::read_to_string(&t.path).unwrap();
    let kept: Vec<TokenEntry> = tokens::parse(&text)
        .unwrap()
        .into_iter()
        .filter(|e| e.principal != "auditor")
        .collect();
    let tmp = t.path.with_extension("new");
    std::fs::write(&tmp, serde_yaml_ng::to_string(&kept).unwrap()).unwrap();
    std::fs::rename(&tmp, &t.path).unwrap();
    let reader = native_client_with(Some(&t.reader));
    eventually("the removed token is refused", || {
        let (client, url) = (reader.clone(), app.url("/api/v1/audit/events"));
        async move {
            let status = client.get(url).send().await.ok()?.status();
            (status == 401).then_some(())
        }
    })
    .await;
    let (status, _) = app.get_as(&client, "/api/v1/audit/events").await;
    assert_eq!(status, 200);
}

/// Without an authenticator the service serves unauthenticated only on loopback; elsewhere it
/// needs `--auth disabled`.
#[test]
fn without_an_authenticator_only_loopback_serves_unauthenticated() {
    use datastorage::config::{AuthSettings, Config, ServerSettings, Settings};
    let settings = |listen: &str, enabled: Option<Switch>| Settings {
        server: ServerSettings {
            listen: Some(listen.into()),
            ..ServerSettings::default()
        },
        auth: AuthSettings {
            enabled,
            ..AuthSettings::default()
        },
        ..Settings::default()
    };
    let loopback = Config::from_settings(settings("127.0.0.1:8080", None)).unwrap();
    assert!(loopback.auth.required.is_none() && loopback.auth.disabled_by_default);
    let error = Config::from_settings(settings("0.0.0.0:8080", None))
        .unwrap_err()
        .to_string();
    assert!(error.contains("--auth disabled"), "{error}");
    let explicit = Config::from_settings(settings("0.0.0.0:8080", Some(Switch(false)))).unwrap();
    assert!(explicit.auth.required.is_none() && !explicit.auth.disabled_by_default);
    let error = Config::from_settings(settings("127.0.0.1:8080", Some(Switch(true))))
        .unwrap_err()
        .to_string();
    assert!(error.contains("no authenticator"), "{error}");
}

/// The writer and the receipt time of an attested event cannot be changed in the database
/// unnoticed: the verifier finds the content changed at that seq.
async fn a_changed_writer_or_receipt_time_is_found(backend: Backend) {
    use datastorage::evidence::verify::{verify_store, Fault};
    let t = tokens();
    let Some(app) = app_with(backend, &t.path, true).await else {
        return;
    };
    let nc = native_client_with(Some(&t.notification));
    for _ in 0..3 {
        let (status, body) = app
            .post_as(&nc, "/api/v1/audit/events", &event("rr-tamper"))
            .await;
        assert_eq!(status, 201, "{body}");
    }
    app.assert_log_verifies(3).await;
    app.change_row("submitted_by = 'gateway'", 2).await;
    app.change_row("received_at = committed_at", 3).await;
    let store = app.open_store().await;
    let report = verify_store(&store, &app.verifier().await).await.unwrap();
    let changed: Vec<Option<i64>> = report
        .findings
        .iter()
        .filter(|f| f.fault == Fault::ContentChanged)
        .map(|f| f.seq)
        .collect();
    assert_eq!(changed, [Some(2), Some(3)], "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_changed_writer_or_receipt_time_is_found() {
    a_changed_writer_or_receipt_time_is_found(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_changed_writer_or_receipt_time_is_found() {
    a_changed_writer_or_receipt_time_is_found(Backend::Sqlite).await;
}

/// Over its rate a principal is answered 429 with `Retry-After`, nothing stored, while others
/// keep their own budget; an address flooding without credentials is limited before its
/// credentials are looked at.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_answer_429_with_retry_after() {
    let t = tokens();
    let Some(app) = spawn_app_with(
        Backend::Sqlite,
        AppOptions {
            tokens_file: Some(t.path.clone()),
            rate_limit: Some((1, 3)),
            ..AppOptions::default()
        },
    )
    .await
    else {
        return;
    };
    let writer = native_client_with(Some(&t.writer));
    // A batch of two and one event: the burst of three is spent.
    let (status, answer) = app
        .post_as(
            &writer,
            "/api/v1/audit/events/batch",
            &json!([event("rr-rate"), event("rr-rate")]),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let (status, _) = app
        .post_as(&writer, "/api/v1/audit/events", &event("rr-rate"))
        .await;
    assert_eq!(status, 201);
    let response = writer
        .post(app.url("/api/v1/audit/events"))
        .json(&event("rr-rate"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["status"], 429, "{problem}");
    assert_eq!(app.db.scalar("SELECT count(*) FROM audit_events").await, 3);
    // Another principal has its own bucket.
    let (status, _) = app
        .get_as(&native_client_with(Some(&t.reader)), "/api/v1/audit/events")
        .await;
    assert_eq!(status, 200);
    assert!(app
        .metrics_as(&t.reader)
        .await
        .contains("datastorage_rate_limited_total 1"));

    let Some(flooded) = spawn_app_with(
        Backend::Sqlite,
        AppOptions {
            tokens_file: Some(t.path.clone()),
            address_rate_limit: Some((1, 2)),
            ..AppOptions::default()
        },
    )
    .await
    else {
        return;
    };
    let statuses: Vec<u16> = futures_statuses(&flooded, 3).await;
    assert_eq!(
        statuses,
        [401, 401, 429],
        "limited before the credential is checked"
    );
}

/// `n` requests without a credential, one after another.
async fn futures_statuses(app: &TestApp, n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        let (status, _, _) =
            call(app, &axum::http::Method::GET, "/api/v1/audit/events", None).await;
        out.push(status);
    }
    out
}

/// Refusals reach the access trail as counts per kind and caller, not one event each; the
/// counts of the last minute are written when the service stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_counted_in_the_access_trail() {
    let t = tokens();
    let Some(app) = app_with(Backend::Postgres, &t.path, false).await else {
        return;
    };
    for _ in 0..25 {
        let (status, _, _) =
            call(&app, &axum::http::Method::GET, "/api/v1/audit/events", None).await;
        assert_eq!(status, 401);
    }
    let writer = native_client_with(Some(&t.writer));
    for _ in 0..3 {
        let (status, _) = app.get_as(&writer, "/api/v1/audit/events").await;
        assert_eq!(status, 403);
    }
    let db = app.db.clone();
    app.shutdown.begin();
    app.handle.await.unwrap().unwrap();
    let counts = |sql: &str| {
        let db = db.clone();
        let sql = sql.to_string();
        async move { db.scalar(&sql).await }
    };
    assert_eq!(
        counts("SELECT count(*) FROM audit_events WHERE event_type = 'datastorage.access.denied'")
            .await,
        2,
        "one event per kind and caller"
    );
    assert_eq!(
        counts(
            "SELECT (event_data->>'count')::int8 FROM audit_events \
             WHERE event_type = 'datastorage.access.denied' AND event_action = 'unauthenticated' \
             AND event_data->>'who' = 'address:127.0.0.1'"
        )
        .await,
        25
    );
    assert_eq!(
        counts(
            "SELECT (event_data->>'count')::int8 FROM audit_events \
             WHERE event_type = 'datastorage.access.denied' AND event_action = 'forbidden' \
             AND actor_id = 'gateway'"
        )
        .await,
        3
    );
}
