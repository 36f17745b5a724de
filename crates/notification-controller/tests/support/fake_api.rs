//! An in-process, stateful stand-in for the Kubernetes API server, enough for the real kube-rs
//! `Controller`, `Recorder` and Lease code: namespaced custom objects, events and leases with
//! list (with a `resourceVersion`), watch (chunked JSON lines, replaying from the requested
//! version), get, create, replace, merge patch of the object and of its `status` subresource.
//! Writes check `resourceVersion` and answer 409 on a mismatch, as the real one does.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::broadcast;

/// (plural, namespace, name)
type Key = (String, String, String);

#[derive(Default)]
struct Store {
    version: u64,
    objects: BTreeMap<Key, Value>,
    /// Every change: (resourceVersion, plural, namespace, watch event type, object).
    log: Vec<(u64, String, String, &'static str, Value)>,
}

pub struct FakeApi {
    store: Mutex<Store>,
    changed: broadcast::Sender<()>,
    /// Status writes still to be refused with 409, to exercise conflict handling.
    pub conflicts_to_inject: AtomicUsize,
    pub status_writes: AtomicUsize,
}

/// A running fake API server.
pub struct FakeApiServer {
    pub api: Arc<FakeApi>,
    pub url: String,
}

impl FakeApiServer {
    pub async fn start() -> FakeApiServer {
        let (changed, _) = broadcast::channel(1024);
        let api = Arc::new(FakeApi {
            store: Mutex::new(Store::default()),
            changed,
            conflicts_to_inject: AtomicUsize::new(0),
            status_writes: AtomicUsize::new(0),
        });
        let router = Router::new()
            .route("/apis/{group}/{version}/{plural}", get(list_all))
            .route(
                "/apis/{group}/{version}/namespaces/{ns}/{plural}",
                get(list_namespaced).post(create),
            )
            .route(
                "/apis/{group}/{version}/namespaces/{ns}/{plural}/{name}",
                get(read).put(replace).patch(patch_object),
            )
            .route(
                "/apis/{group}/{version}/namespaces/{ns}/{plural}/{name}/status",
                get(read).patch(patch_status).put(replace_status),
            )
            .with_state(api.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        FakeApiServer { api, url }
    }

    /// A kube client for this server.
    pub fn client(&self) -> kube::Client {
        let config = kube::Config::new(self.url.parse().unwrap());
        kube::Client::try_from(config).unwrap()
    }
}

impl FakeApi {
    /// The stored objects of `plural` (all namespaces).
    pub fn objects(&self, plural: &str) -> Vec<Value> {
        let store = self.store.lock().unwrap();
        store
            .objects
            .iter()
            .filter(|((p, _, _), _)| p == plural)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Waits (on change notifications) until an object of `plural` satisfies `pred`.
    pub async fn wait_for(&self, plural: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let found = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let mut changed = self.changed.subscribe();
                if let Some(o) = self.objects(plural).into_iter().find(|o| pred(o)) {
                    return o;
                }
                let _ = changed.recv().await;
            }
        })
        .await;
        found.unwrap_or_else(|_| {
            panic!("no {plural} object as expected: {:?}", self.objects(plural))
        })
    }

    fn write(&self, key: Key, kind: &'static str, mut object: Value) -> Value {
        let mut store = self.store.lock().unwrap();
        store.version += 1;
        let version = store.version;
        object["metadata"]["resourceVersion"] = json!(version.to_string());
        if kind == "DELETED" {
            store.objects.remove(&key);
        } else {
            store.objects.insert(key.clone(), object.clone());
        }
        store
            .log
            .push((version, key.0.clone(), key.1.clone(), kind, object.clone()));
        drop(store);
        let _ = self.changed.send(());
        object
    }

    fn get(&self, key: &Key) -> Option<Value> {
        self.store.lock().unwrap().objects.get(key).cloned()
    }
}

/// The request body as JSON, whatever content type the client named (merge patches come as
/// `application/merge-patch+json`).
fn parse(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or(Value::Null)
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response {
    (
        code,
        Json(
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": message, "reason": reason, "code": code.as_u16()}),
        ),
    )
        .into_response()
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    watch: Option<bool>,
    resource_version: Option<String>,
    timeout_seconds: Option<u64>,
}

async fn list_all(
    State(api): State<Arc<FakeApi>>,
    Path((group, version, plural)): Path<(String, String, String)>,
    Query(q): Query<ListQuery>,
) -> Response {
    list_or_watch(api, group, version, plural, None, q).await
}

async fn list_namespaced(
    State(api): State<Arc<FakeApi>>,
    Path((group, version, ns, plural)): Path<(String, String, String, String)>,
    Query(q): Query<ListQuery>,
) -> Response {
    list_or_watch(api, group, version, plural, Some(ns), q).await
}

async fn list_or_watch(
    api: Arc<FakeApi>,
    group: String,
    version: String,
    plural: String,
    ns: Option<String>,
    q: ListQuery,
) -> Response {
    let matches = move |p: &str, n: &str| p == plural && ns.as_deref().is_none_or(|ns| ns == n);
    if q.watch != Some(true) {
        let store = api.store.lock().unwrap();
        let items: Vec<Value> = store
            .objects
            .iter()
            .filter(|((p, n, _), _)| matches(p, n))
            .map(|(_, v)| v.clone())
            .collect();
        return Json(json!({
            "apiVersion": format!("{group}/{version}"), "kind": "List",
            "metadata": {"resourceVersion": store.version.to_string()},
            "items": items,
        }))
        .into_response();
    }
    let from: u64 = q
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let deadline =
        tokio::time::Instant::now() + Duration::from_secs(q.timeout_seconds.unwrap_or(290));
    let changed = api.changed.subscribe();
    let stream = futures::stream::unfold((from, changed), move |(mut cursor, mut changed)| {
        let api = api.clone();
        let matches = matches.clone();
        async move {
            loop {
                let lines: Vec<u8> = {
                    let store = api.store.lock().unwrap();
                    let mut out = Vec::new();
                    for (v, p, n, kind, obj) in &store.log {
                        if *v > cursor && matches(p, n) {
                            out.extend(
                                serde_json::to_vec(&json!({"type": kind, "object": obj})).unwrap(),
                            );
                            out.push(b'\n');
                        }
                    }
                    cursor = store.version;
                    out
                };
                if !lines.is_empty() {
                    return Some((Ok::<_, Infallible>(Bytes::from(lines)), (cursor, changed)));
                }
                match tokio::time::timeout_at(deadline, changed.recv()).await {
                    Err(_) => return None,
                    Ok(Err(broadcast::error::RecvError::Closed)) => return None,
                    Ok(_) => {}
                }
            }
        }
    });
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .unwrap()
}

async fn create(
    State(api): State<Arc<FakeApi>>,
    Path((_group, _version, ns, plural)): Path<(String, String, String, String)>,
    body: Bytes,
) -> Response {
    let mut object = parse(&body);
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let name = if name.is_empty() {
        let prefix = object["metadata"]["generateName"]
            .as_str()
            .unwrap_or("obj-");
        format!("{prefix}{}", uuid::Uuid::new_v4().simple())
    } else {
        name
    };
    let key = (plural, ns.clone(), name.clone());
    if api.get(&key).is_some() {
        return status(StatusCode::CONFLICT, "AlreadyExists", "already exists");
    }
    let metadata = &mut object["metadata"];
    metadata["name"] = json!(name);
    metadata["namespace"] = json!(ns);
    metadata["uid"] = json!(uuid::Uuid::new_v4().to_string());
    metadata["generation"] = json!(1);
    metadata["creationTimestamp"] =
        json!(chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string());
    if let Some(o) = object.as_object_mut() {
        o.remove("status");
    }
    (StatusCode::CREATED, Json(api.write(key, "ADDED", object))).into_response()
}

async fn read(
    State(api): State<Arc<FakeApi>>,
    Path(path): Path<(String, String, String, String, String)>,
) -> Response {
    let (_, _, ns, plural, name) = path;
    match api.get(&(plural, ns, name)) {
        Some(o) => Json(o).into_response(),
        None => status(StatusCode::NOT_FOUND, "NotFound", "not found"),
    }
}

/// Checks the `resourceVersion` a write was based on, if it names one.
fn version_conflict(stored: &Value, sent: &Value) -> bool {
    match sent["metadata"]["resourceVersion"].as_str() {
        Some(v) if !v.is_empty() => stored["metadata"]["resourceVersion"].as_str() != Some(v),
        _ => false,
    }
}

async fn replace(
    State(api): State<Arc<FakeApi>>,
    Path((_, _, ns, plural, name)): Path<(String, String, String, String, String)>,
    body: Bytes,
) -> Response {
    let mut object = parse(&body);
    let key = (plural, ns, name);
    let Some(stored) = api.get(&key) else {
        return status(StatusCode::NOT_FOUND, "NotFound", "not found");
    };
    if version_conflict(&stored, &object) {
        return status(
            StatusCode::CONFLICT,
            "Conflict",
            "the object has been modified",
        );
    }
    object["metadata"]["uid"] = stored["metadata"]["uid"].clone();
    object["status"] = stored["status"].clone();
    Json(api.write(key, "MODIFIED", object)).into_response()
}

async fn patch_object(
    State(api): State<Arc<FakeApi>>,
    Path((_, _, ns, plural, name)): Path<(String, String, String, String, String)>,
    body: Bytes,
) -> Response {
    let patch = parse(&body);
    let key = (plural, ns, name);
    let Some(mut stored) = api.get(&key) else {
        return status(StatusCode::NOT_FOUND, "NotFound", "not found");
    };
    if version_conflict(&stored, &patch) {
        return status(
            StatusCode::CONFLICT,
            "Conflict",
            "the object has been modified",
        );
    }
    let keep_status = stored["status"].clone();
    json_patch::merge(&mut stored, &patch);
    stored["status"] = keep_status;
    Json(api.write(key, "MODIFIED", stored)).into_response()
}

async fn write_status(api: Arc<FakeApi>, key: Key, sent: Value, merge: bool) -> Response {
    let Some(mut stored) = api.get(&key) else {
        return status(StatusCode::NOT_FOUND, "NotFound", "not found");
    };
    let injected = api
        .conflicts_to_inject
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if injected || version_conflict(&stored, &sent) {
        return status(
            StatusCode::CONFLICT,
            "Conflict",
            "the object has been modified",
        );
    }
    api.status_writes.fetch_add(1, Ordering::SeqCst);
    if merge {
        json_patch::merge(&mut stored["status"], &sent["status"]);
    } else {
        stored["status"] = sent["status"].clone();
    }
    Json(api.write(key, "MODIFIED", stored)).into_response()
}

async fn patch_status(
    State(api): State<Arc<FakeApi>>,
    Path((_, _, ns, plural, name)): Path<(String, String, String, String, String)>,
    body: Bytes,
) -> Response {
    let patch = parse(&body);
    write_status(api, (plural, ns, name), patch, true).await
}

async fn replace_status(
    State(api): State<Arc<FakeApi>>,
    Path((_, _, ns, plural, name)): Path<(String, String, String, String, String)>,
    body: Bytes,
) -> Response {
    let object = parse(&body);
    write_status(api, (plural, ns, name), object, false).await
}
