//! Records a few audit events against a running Data Storage and prints what happened.
//!
//! ```sh
//! cargo run -p datastorage -- serve &            # the embedded default on 127.0.0.1:8080
//! cargo run -p audit-client --example record_events -- http://127.0.0.1:8080
//! ```

use std::time::Duration;

use audit_client::AuditClient;
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("DATA_STORAGE_URL").ok())
        .unwrap_or_else(|| "http://127.0.0.1:8080".to_string());
    let spill = std::env::temp_dir().join("audit-client-example-spill");
    let client = AuditClient::builder(&url)
        .service_name("example")
        .spill_dir(&spill)
        .build()?;
    for attempt in 1..=3 {
        let id = client.record(json!({
            "event_type": "notification.message.sent",
            "event_category": "notification",
            "event_action": "sent",
            "event_outcome": "success",
            "correlation_id": "rr-example",
            "resource_type": "NotificationRequest",
            "resource_id": "notify-oncall",
            "event_data": {"channel": "console", "attempt": attempt}
        }))?;
        println!("recorded {id}");
    }
    client.record_notification(&audit_model::NotificationAudit {
        remediation_id: "rr-example".into(),
        notification_id: "notify-oncall".into(),
        recipient: "#ops".into(),
        channel: "slack".into(),
        message_summary: "Pod restarted".into(),
        status: "sent".into(),
        sent_at: chrono::Utc::now(),
        escalation_level: 0,
        delivery_status: Some("200 OK".into()),
        error_message: None,
    })?;
    let report = client.close(Duration::from_secs(10)).await;
    println!("{report:?}");
    println!("query: curl '{url}/api/v1/audit/events?correlation_id=rr-example'");
    Ok(())
}
