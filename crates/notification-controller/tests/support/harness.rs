//! One controller wired to the fake API server and the real receivers, as a test starts it.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use kube::api::PostParams;
use kube::runtime::wait::await_condition;
use kube::Api;
use notification_controller::breaker::CircuitBreakers;
use notification_controller::channels::{ChannelSettings, Channels, SmsSettings, SmtpSettings};
use notification_controller::controller::{context, run_controller};
use notification_controller::crd::NotificationRequest;
use notification_controller::losses::Auditing;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::fake_api::FakeApiServer;
use super::receivers::ReceiverServer;
use super::smtp::SmtpServer;

pub const HMAC_KEY: &str = "webhook-signing-key";

pub struct Harness {
    pub api: FakeApiServer,
    pub http: ReceiverServer,
    pub smtp: Option<SmtpServer>,
    pub files: tempfile::TempDir,
    stop: CancellationToken,
    running: Option<tokio::task::JoinHandle<()>>,
    audit: Option<Auditing>,
    breaker_threshold: u32,
}

impl Harness {
    pub async fn start(with_smtp: bool, audit: Option<Auditing>) -> Option<Harness> {
        Self::start_with_breakers(with_smtp, audit, 50).await
    }

    /// [`Harness::start`] with breakers that open after `breaker_threshold` failures.
    pub async fn start_with_breakers(
        with_smtp: bool,
        audit: Option<Auditing>,
        breaker_threshold: u32,
    ) -> Option<Harness> {
        let smtp = if with_smtp {
            Some(SmtpServer::start().await?)
        } else {
            None
        };
        let mut h = Harness {
            api: FakeApiServer::start().await,
            http: ReceiverServer::start().await,
            smtp,
            files: tempfile::tempdir().unwrap(),
            stop: CancellationToken::new(),
            running: None,
            audit,
            breaker_threshold,
        };
        h.run();
        Some(h)
    }

    pub fn settings(&self) -> ChannelSettings {
        let url = &self.http.url;
        ChannelSettings {
            slack_webhook_url: Some(format!("{url}/slack")),
            teams_webhook_url: Some(format!("{url}/teams")),
            webhook_default_url: Some(format!("{url}/hook")),
            webhook_hmac_secret: Some(HMAC_KEY.to_string()),
            smtp: self.smtp.as_ref().map(|s| SmtpSettings {
                host: "127.0.0.1".into(),
                port: s.port,
                starttls: false,
                username: None,
                password: None,
                from: "Kubernaut <noreply@kubernaut.ai>".into(),
            }),
            sms: Some(SmsSettings {
                base_url: url.clone(),
                account_sid: "AC123".into(),
                auth_token: "sms-token".into(),
                from: "+15550000000".into(),
            }),
            file_dir: Some(self.files.path().to_path_buf()),
            timeout: Duration::from_secs(10),
        }
    }

    /// Starts a controller (a fresh process, as far as the controller can tell).
    pub fn run(&mut self) {
        let channels = Channels::from_settings(&self.settings()).unwrap();
        let ctx = context(
            self.api.client(),
            channels,
            CircuitBreakers::new(self.breaker_threshold, Duration::from_secs(60)),
            self.audit.clone(),
            Arc::new(Utc::now),
        );
        self.stop = CancellationToken::new();
        let stop = self.stop.clone();
        self.running = Some(tokio::spawn(async move {
            run_controller(ctx, None, async move { stop.cancelled().await }).await
        }));
    }

    /// Stops the controller and waits for its reconciles to finish.
    pub async fn halt(&mut self) {
        self.stop.cancel();
        if let Some(running) = self.running.take() {
            running.await.unwrap();
        }
    }

    pub fn notifications(&self) -> Api<NotificationRequest> {
        Api::namespaced(self.api.client(), "ops")
    }

    /// Creates an object as given, even one the controller cannot read; returns it as stored.
    pub async fn create_raw(&self, namespace: &str, name: &str, spec: Value) -> Value {
        let url = format!(
            "{}/apis/notification.kubernaut.ai/v1alpha1/namespaces/{namespace}/notificationrequests",
            self.api.url
        );
        let object = json!({
            "apiVersion": "notification.kubernaut.ai/v1alpha1",
            "kind": "NotificationRequest",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        });
        let answer = reqwest::Client::new()
            .post(url)
            .json(&object)
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_success(), "{}", answer.status());
        answer.json().await.unwrap()
    }

    /// Waits until the notification `namespace/name` has finished (a `completionTime`) and the
    /// controller has finished with it (its final event, published after the audit records are
    /// handed to the audit client); the object as it then was.
    pub async fn finished_in(&self, namespace: &str, name: &str) -> Value {
        let object = self
            .api
            .api
            .wait_for("notificationrequests", |o| {
                o["metadata"]["namespace"] == namespace
                    && o["metadata"]["name"] == name
                    && !o["status"]["completionTime"].is_null()
            })
            .await;
        self.final_event(namespace, name).await;
        object
    }

    /// Waits for the final event of `namespace/name`, which the controller publishes after it
    /// has handed the notification's audit records to the audit client.
    async fn final_event(&self, namespace: &str, name: &str) {
        self.api
            .api
            .wait_for("events", |e| {
                e["regarding"]["namespace"] == namespace
                    && e["regarding"]["name"] == name
                    && [
                        "NotificationSent",
                        "NotificationPartiallySent",
                        "NotificationFailed",
                    ]
                    .iter()
                    .any(|r| e["reason"] == *r)
            })
            .await;
    }

    pub async fn create(&self, spec: Value) -> NotificationRequest {
        let nr: NotificationRequest = serde_json::from_value(json!({
            "apiVersion": "notification.kubernaut.ai/v1alpha1",
            "kind": "NotificationRequest",
            "metadata": {"name": "disk-full", "namespace": "ops"},
            "spec": spec,
        }))
        .unwrap();
        self.notifications()
            .create(&PostParams::default(), &nr)
            .await
            .unwrap()
    }

    /// Waits (on a watch) until the notification reaches a final phase and the controller has
    /// finished with it: the final Kubernetes event is published after the audit records are
    /// handed to the audit client.
    pub async fn finished(&self, name: &str) -> NotificationRequest {
        let nr = self.final_status(name).await;
        self.final_event("ops", name).await;
        nr
    }

    async fn final_status(&self, name: &str) -> NotificationRequest {
        let done = |nr: Option<&NotificationRequest>| {
            nr.and_then(|n| n.status.as_ref())
                .is_some_and(|s| s.completion_time.is_some())
        };
        tokio::time::timeout(
            Duration::from_secs(60),
            await_condition(self.notifications(), name, done),
        )
        .await
        .expect("the notification did not finish in time")
        .unwrap()
        .unwrap()
    }
}

/// A notification on every channel, for one recipient reachable on all of them.
pub fn all_channels_spec() -> Value {
    json!({
        "type": "escalation",
        "priority": "high",
        "recipients": [{
            "email": "oncall@example.com", "slack": "#ops", "teams": "SRE on-call",
            "phone": "+15551234567"
        }],
        "subject": "Disk full on node-1",
        "body": "Disk 95% full; db password=hunter2 appeared in the logs",
        "channels": ["email", "slack", "teams", "sms", "webhook", "console", "file"],
        "metadata": {"remediationRequestName": "rr-2041"},
        "actionLinks": [{"service": "grafana", "url": "https://grafana.example.com/d/1", "label": "Dashboard"}],
        "retryPolicy": {"maxAttempts": 3, "initialBackoffSeconds": 1, "backoffMultiplier": 1,
                        "maxBackoffSeconds": 60}
    })
}

pub const REDACTED_BODY: &str = "Disk 95% full; db password=[REDACTED] appeared in the logs";
