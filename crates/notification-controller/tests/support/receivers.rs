//! Real local receivers for the HTTP channels: one server standing in for Slack, Teams, a
//! webhook endpoint and a Twilio-compatible SMS API. It records every request exactly as it
//! arrived and answers from a per-path script (default: success).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Router;
use tokio::sync::Notify;

#[derive(Debug, Clone)]
pub struct Captured {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Captured {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    }
}

#[derive(Default)]
pub struct Receivers {
    captured: Mutex<Vec<Captured>>,
    script: Mutex<HashMap<String, VecDeque<u16>>>,
    arrived: Notify,
}

pub struct ReceiverServer {
    pub receivers: Arc<Receivers>,
    pub url: String,
}

impl ReceiverServer {
    pub async fn start() -> ReceiverServer {
        let receivers = Arc::new(Receivers::default());
        let router = Router::new()
            .fallback(receive)
            .with_state(receivers.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        ReceiverServer { receivers, url }
    }
}

impl Receivers {
    /// The next answers on `path`, in order; afterwards the default success.
    pub fn script(&self, path: &str, codes: &[u16]) {
        self.script
            .lock()
            .unwrap()
            .insert(path.to_string(), codes.iter().copied().collect());
    }

    /// Every request to `path` so far.
    pub fn on(&self, path: &str) -> Vec<Captured> {
        self.captured
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.path == path)
            .cloned()
            .collect()
    }

    /// Waits until `path` has received `n` requests.
    pub async fn wait_for(&self, path: &str, n: usize) -> Vec<Captured> {
        tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let arrived = self.arrived.notified();
                let got = self.on(path);
                if got.len() >= n {
                    return got;
                }
                arrived.await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{path} did not receive {n} requests"))
    }
}

async fn receive(State(r): State<Arc<Receivers>>, request: Request) -> (StatusCode, String) {
    let path = request.uri().path().to_string();
    let headers = request.headers().clone();
    let body = axum::body::to_bytes(request.into_body(), 1 << 20)
        .await
        .unwrap();
    let scripted = r
        .script
        .lock()
        .unwrap()
        .get_mut(&path)
        .and_then(VecDeque::pop_front);
    r.captured.lock().unwrap().push(Captured {
        path: path.clone(),
        headers,
        body,
    });
    r.arrived.notify_waiters();
    let sms = path.ends_with("/Messages.json");
    let code = scripted.unwrap_or(if sms { 201 } else { 200 });
    let text = match (sms, code) {
        (true, 201) => r#"{"sid":"SM0123456789abcdef","status":"queued"}"#.to_string(),
        (_, 200) => "ok".to_string(),
        _ => format!("scripted answer {code}"),
    };
    (StatusCode::from_u16(code).unwrap(), text)
}
