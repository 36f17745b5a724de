//! The real kube-rs `Controller` loop against an in-process stateful API server, delivering to
//! real local receivers: an HTTP server for Slack, Teams, webhook and SMS, an SMTP server for
//! email, and a directory for the file channel.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use base64::Engine;
use kube::runtime::wait::await_condition;
use notification_controller::crd::{NotificationRequest, Phase};
use notification_controller::leader::{LeaseLock, LeaseTimings};
use serde_json::{json, Value};
use support::fake_api::FakeApiServer;
use support::harness::{all_channels_spec, Harness, HMAC_KEY, REDACTED_BODY};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_channel_delivers_its_exact_payload_once() {
    let Some(h) = Harness::start(true, None).await else {
        return;
    };
    h.create(all_channels_spec()).await;
    let nr = h.finished("disk-full").await;
    let status = nr.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Sent), "{status:?}");
    assert_eq!(
        (
            status.total_attempts,
            status.successful_deliveries,
            status.failed_deliveries
        ),
        (7, 7, 0)
    );

    // Slack: Block Kit with the priority emoji, the redacted body, the link and the context.
    let slack = h.http.receivers.on("/slack");
    assert_eq!(slack.len(), 1);
    assert_eq!(
        slack[0].json(),
        json!({
            "text": "⚠️ Disk full on node-1",
            "channel": "#ops",
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": "⚠️ Disk full on node-1", "emoji": true}},
                {"type": "section", "text": {"type": "mrkdwn", "text": REDACTED_BODY}},
                {"type": "actions", "elements": [{"type": "button", "text": {"type": "plain_text", "text": "Dashboard"},
                                                  "url": "https://grafana.example.com/d/1"}]},
                {"type": "context", "elements": [{"type": "mrkdwn",
                    "text": "*Priority:* high | *Type:* escalation | *Notification:* ops/disk-full"}]}
            ]
        })
    );

    // Teams: an Adaptive Card.
    let teams = h.http.receivers.on("/teams");
    assert_eq!(teams.len(), 1);
    let card = &teams[0].json()["attachments"][0];
    assert_eq!(
        card["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(card["content"]["body"][0]["text"], "⚠️ Disk full on node-1");
    assert_eq!(card["content"]["body"][1]["text"], REDACTED_BODY);
    assert_eq!(
        card["content"]["body"][2]["facts"][3],
        json!({"title": "To", "value": "SRE on-call"})
    );
    assert_eq!(
        card["content"]["actions"][0]["url"],
        "https://grafana.example.com/d/1"
    );

    // Webhook: the notification as JSON, with an HMAC-SHA256 over the exact bytes received.
    let hook = h.http.receivers.on("/hook");
    assert_eq!(hook.len(), 1);
    assert_eq!(
        hook[0].header("x-notification-signature").as_deref(),
        Some(
            notification_controller::channels::webhook_signature(HMAC_KEY, &hook[0].body).as_str()
        )
    );
    let body = hook[0].json();
    assert_eq!(
        (
            &body["name"],
            &body["namespace"],
            &body["subject"],
            &body["body"],
            &body["priority"],
            &body["type"]
        ),
        (
            &json!("disk-full"),
            &json!("ops"),
            &json!("Disk full on node-1"),
            &json!(REDACTED_BODY),
            &json!("high"),
            &json!("escalation")
        )
    );
    assert_eq!(body["metadata"]["remediationRequestName"], "rr-2041");

    // SMS: a Twilio-style form with basic authentication.
    let sms = h
        .http
        .receivers
        .on("/2010-04-01/Accounts/AC123/Messages.json");
    assert_eq!(sms.len(), 1);
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&sms[0].body)
        .into_owned()
        .collect();
    assert_eq!(
        form,
        [
            ("To".to_string(), "+15551234567".to_string()),
            ("From".to_string(), "+15550000000".to_string()),
            (
                "Body".to_string(),
                format!("[HIGH] Disk full on node-1\n{REDACTED_BODY}")
            ),
        ]
    );
    let basic = base64::engine::general_purpose::STANDARD.encode("AC123:sms-token");
    assert_eq!(
        sms[0].header("authorization"),
        Some(format!("Basic {basic}"))
    );

    // Email: one message through the SMTP server, redacted.
    let mails = h.smtp.as_ref().unwrap().messages();
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert!(mail.contains("To: oncall@example.com"), "{mail}");
    assert!(
        mail.contains("Subject: [HIGH] Disk full on node-1"),
        "{mail}"
    );
    assert!(mail.contains(REDACTED_BODY), "{mail}");
    assert!(!mail.contains("hunter2"), "{mail}");

    // File: one JSON document.
    let files: Vec<_> = std::fs::read_dir(h.files.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1);
    let doc: Value = serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap();
    assert_eq!(
        (&doc["subject"], &doc["body"]),
        (&json!("Disk full on node-1"), &json!(REDACTED_BODY))
    );

    // Every attempt recorded the provider's answer; the Sent event was published.
    for a in &status.delivery_attempts {
        assert!(a.provider_response.is_some(), "{a:?}");
    }
    let sms_attempt = status
        .delivery_attempts
        .iter()
        .find(|a| a.channel.as_str() == "sms")
        .unwrap();
    assert_eq!(
        sms_attempt.provider_response.as_deref(),
        Some("201 Created")
    );
    let email_attempt = status
        .delivery_attempts
        .iter()
        .find(|a| a.channel.as_str() == "email")
        .unwrap();
    assert!(email_attempt
        .provider_response
        .as_deref()
        .unwrap()
        .starts_with("250"));
    h.api
        .api
        .wait_for("events", |e| {
            e["reason"] == "NotificationSent" && e["regarding"]["name"] == "disk-full"
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_retried_with_backoff_a_400_is_not_and_conflicts_change_nothing() {
    let Some(h) = Harness::start(false, None).await else {
        return;
    };
    h.http.receivers.script("/slack", &[503, 429]);
    h.http.receivers.script("/hook", &[400]);
    h.api.api.conflicts_to_inject.store(2, Ordering::SeqCst);
    let mut spec = all_channels_spec();
    spec["channels"] = json!(["slack", "webhook", "console"]);
    h.create(spec).await;
    let nr = h.finished("disk-full").await;
    let status = nr.status.unwrap();

    assert_eq!(status.phase, Some(Phase::PartiallySent), "{status:?}");
    assert_eq!(
        (status.successful_deliveries, status.failed_deliveries),
        (2, 1)
    );
    assert_eq!(
        h.http.receivers.on("/slack").len(),
        3,
        "two failures, then success"
    );
    assert_eq!(
        h.http.receivers.on("/hook").len(),
        1,
        "a 400 is not retried"
    );
    let slack: Vec<_> = status
        .delivery_attempts
        .iter()
        .filter(|a| a.channel.as_str() == "slack")
        .collect();
    let statuses: Vec<_> = slack
        .iter()
        .map(|a| (a.attempt, format!("{:?}", a.status)))
        .collect();
    assert_eq!(
        statuses,
        [
            (1, "Failed".into()),
            (2, "Failed".into()),
            (3, "Success".into())
        ]
    );
    for pair in slack.windows(2) {
        // initialBackoffSeconds 1, multiplier 1, jitter ±10 %.
        let gap = (pair[1].timestamp - pair[0].timestamp).as_seconds_f64();
        assert!(gap >= 0.9, "retried after {gap}s");
    }
    let hook = status
        .delivery_attempts
        .iter()
        .find(|a| a.channel.as_str() == "webhook")
        .unwrap();
    assert_eq!(format!("{:?}", hook.status), "Invalid");
    assert!(
        hook.error
            .as_deref()
            .unwrap()
            .starts_with("400 Bad Request"),
        "{hook:?}"
    );
    assert_eq!(
        h.api.api.conflicts_to_inject.load(Ordering::SeqCst),
        0,
        "conflicts were hit"
    );
    assert_eq!(status.total_attempts, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_controller_never_delivers_a_succeeded_channel_again() {
    let Some(mut h) = Harness::start(false, None).await else {
        return;
    };
    h.http.receivers.script("/slack", &[503]);
    let mut spec = all_channels_spec();
    spec["channels"] = json!(["slack", "file"]);
    spec["retryPolicy"]["initialBackoffSeconds"] = json!(2);
    h.create(spec).await;
    // After the first round (file delivered, Slack failed), stop the controller ...
    h.http.receivers.wait_for("/slack", 1).await;
    let retrying = |nr: Option<&NotificationRequest>| {
        nr.and_then(|n| n.status.as_ref())
            .is_some_and(|s| s.phase == Some(Phase::Retrying))
    };
    let waited = tokio::time::timeout(
        Duration::from_secs(30),
        await_condition(h.notifications(), "disk-full", retrying),
    )
    .await;
    assert!(
        waited.is_ok(),
        "{:?}",
        h.notifications().get("disk-full").await.unwrap().status
    );
    h.halt().await;
    // ... and start a new one: it retries Slack only.
    h.run();
    let status = h.finished("disk-full").await.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Sent));
    assert_eq!(h.http.receivers.on("/slack").len(), 2);
    let files = std::fs::read_dir(h.files.path()).unwrap().count();
    assert_eq!(files, 1, "the file channel was delivered again");
    assert_eq!(status.total_attempts, 3);
}

#[tokio::test]
async fn one_replica_leads_and_a_standby_takes_over_a_released_or_expired_lease() {
    let api = FakeApiServer::start().await;
    let timings = LeaseTimings {
        lease_duration: Duration::from_secs(1),
        renew_deadline: Duration::from_millis(800),
        retry_period: Duration::from_millis(100),
    };
    let a = LeaseLock::new(
        api.client(),
        "ops",
        "notification-controller",
        "replica-a",
        timings.clone(),
    );
    let b = LeaseLock::new(
        api.client(),
        "ops",
        "notification-controller",
        "replica-b",
        timings.clone(),
    );
    assert!(a.try_acquire_or_renew().await.unwrap());
    assert!(!b.try_acquire_or_renew().await.unwrap(), "two leaders");
    assert!(a.try_acquire_or_renew().await.unwrap(), "the leader renews");
    let holder =
        |api: &FakeApiServer| api.api.objects("leases")[0]["spec"]["holderIdentity"].clone();
    assert_eq!(holder(&api), "replica-a");

    // Released at shutdown: the standby takes over at once.
    a.release().await.unwrap();
    assert!(b.try_acquire_or_renew().await.unwrap());
    assert_eq!(holder(&api), "replica-b");
    assert_eq!(api.api.objects("leases")[0]["spec"]["leaseTransitions"], 1);

    // Not renewed: the other replica takes over once the lease expires.
    tokio::time::timeout(Duration::from_secs(10), a.acquire())
        .await
        .unwrap();
    assert_eq!(holder(&api), "replica-a");
    assert!(!b.try_acquire_or_renew().await.unwrap());
}

/// A controller meets an object it cannot read (a channel a newer CRD version added), on its
/// watch and, restarted, in its first LIST: it reports that object (a warning event naming the
/// field, a metric) and serves the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_object_is_reported_and_the_others_are_served() {
    let Some(mut h) = Harness::start(false, None).await else {
        return;
    };
    let mut newer = all_channels_spec();
    newer["channels"] = json!(["console", "pagerduty"]);
    h.create_raw("ops", "from-a-newer-crd", newer).await;
    let mut spec = all_channels_spec();
    spec["channels"] = json!(["webhook"]);
    h.create_raw("ops", "disk-full", spec.clone()).await;
    let nr = h.finished_in("ops", "disk-full").await;
    assert_eq!(nr["status"]["phase"], "Sent", "{nr}");
    let event = h
        .api
        .api
        .wait_for("events", |e| {
            e["regarding"]["name"] == "from-a-newer-crd" && e["reason"] == "Unreadable"
        })
        .await;
    let note = event["note"].as_str().unwrap();
    assert!(
        note.contains("spec.channels[1]") && note.contains("unknown variant `pagerduty`"),
        "{note}"
    );
    assert!(!note.contains("hunter2"), "{note}");

    // Restarted, the controller's first LIST holds the unreadable object: it still serves.
    h.halt().await;
    h.run();
    h.create_raw("ops", "disk-full-again", spec).await;
    let nr = h.finished_in("ops", "disk-full-again").await;
    assert_eq!(nr["status"]["phase"], "Sent", "{nr}");
    assert_eq!(h.http.receivers.on("/hook").len(), 2);
    // The unreadable one is left alone: no status written.
    let unreadable = h
        .api
        .api
        .objects("notificationrequests")
        .into_iter()
        .find(|o| o["metadata"]["name"] == "from-a-newer-crd")
        .unwrap();
    assert!(unreadable["status"].is_null(), "{unreadable}");
}

/// One recipient's webhook is dead: its breaker opens, and the other webhook recipients keep
/// receiving at once (a breaker per channel would have held them back for the cool-down).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_webhook_does_not_hold_back_the_others() {
    let Some(h) = Harness::start_with_breakers(false, None, 1).await else {
        return;
    };
    h.http.receivers.script("/dead", &[503; 20]);
    let url = h.http.url.clone();
    let mut spec = all_channels_spec();
    spec["channels"] = json!(["webhook"]);
    spec["recipients"] = json!([{"webhookURL": format!("{url}/dead")}]);
    spec["retryPolicy"]["maxAttempts"] = json!(1);
    h.create_raw("ops", "to-the-dead-one", spec.clone()).await;
    let dead = h.finished_in("ops", "to-the-dead-one").await;
    assert_eq!(dead["status"]["phase"], "Failed", "{dead}");
    spec["recipients"] = json!([{"webhookURL": format!("{url}/alive")}]);
    h.create_raw("ops", "to-a-live-one", spec).await;
    let alive = h.finished_in("ops", "to-a-live-one").await;
    assert_eq!(alive["status"]["phase"], "Sent", "{alive}");
    assert_eq!(h.http.receivers.on("/alive").len(), 1);
    assert_eq!(h.http.receivers.on("/dead").len(), 1);
}

/// A controller stopped before its first LIST completed (at start, or with the API server
/// unreachable) stops at once: kube-runtime's runner would wait for that LIST forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_stopped_before_its_first_list_stops() {
    let Some(mut h) = Harness::start(false, None).await else {
        return;
    };
    tokio::time::timeout(Duration::from_secs(10), h.halt())
        .await
        .expect("the controller stopped");
    // And it starts again and serves.
    h.run();
    let mut spec = all_channels_spec();
    spec["channels"] = json!(["console"]);
    h.create_raw("ops", "after-the-restart", spec).await;
    let nr = h.finished_in("ops", "after-the-restart").await;
    assert_eq!(nr["status"]["phase"], "Sent", "{nr}");
    tokio::time::timeout(Duration::from_secs(10), h.halt())
        .await
        .expect("the controller stopped");
}
