//! The `notification-controller` binary as a test runs it: a kubeconfig for the fake API server,
//! the environment operators give it, a NotificationRequest delivered through it, and SIGTERM.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use kube::api::PostParams;
use kube::runtime::wait::await_condition;
use kube::Api;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use notification_controller::crd::NotificationRequest;
use serde_json::{json, Value};

use super::fake_api::FakeApiServer;
use super::harness::all_channels_spec;

/// A free port on the loopback interface.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A kubeconfig in `dir` whose cluster is the fake API server, namespace `ops`.
pub fn kubeconfig(dir: &Path, api: &FakeApiServer) -> PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\n\
             clusters: [{{name: fake, cluster: {{server: \"{}\"}}}}]\n\
             users: [{{name: fake, user: {{}}}}]\n\
             contexts: [{{name: fake, context: {{cluster: fake, user: fake, namespace: ops}}}}]\n",
            api.url
        ),
    )
    .unwrap();
    path
}

/// `notification-controller run` with only the environment given here: the fake cluster,
/// Data Storage at `data_storage`, the audit spill and state under `dir`, metrics on
/// `metrics_port`, warnings only; the caller adds the channels' settings.
pub fn command(
    api: &FakeApiServer,
    data_storage: &str,
    dir: &Path,
    metrics_port: u16,
) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_notification-controller"));
    command
        .arg("run")
        .env_clear()
        .env("KUBECONFIG", kubeconfig(dir, api))
        .env("DATA_STORAGE_URL", data_storage)
        .env("AUDIT_SPILL_DIR", dir.join("spill"))
        .env("METRICS_LISTEN", format!("127.0.0.1:{metrics_port}"))
        .env("POD_NAMESPACE", "ops")
        .env("POD_NAME", "notification-controller-0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true);
    command
}

/// Creates the NotificationRequest `disk-full` in `ops` for `channels` and waits until it is
/// complete.
pub async fn deliver(api: &FakeApiServer, channels: Value) -> NotificationRequest {
    let notifications: Api<NotificationRequest> = Api::namespaced(api.client(), "ops");
    let mut spec = all_channels_spec();
    spec["channels"] = channels;
    let nr: NotificationRequest = serde_json::from_value(json!({
        "apiVersion": "notification.kubernaut.ai/v1alpha1", "kind": "NotificationRequest",
        "metadata": {"name": "disk-full", "namespace": "ops"}, "spec": spec,
    }))
    .unwrap();
    notifications
        .create(&PostParams::default(), &nr)
        .await
        .unwrap();
    let done = |nr: Option<&NotificationRequest>| {
        nr.and_then(|n| n.status.as_ref())
            .is_some_and(|s| s.completion_time.is_some())
    };
    tokio::time::timeout(
        Duration::from_secs(60),
        await_condition(notifications, "disk-full", done),
    )
    .await
    .expect("not delivered in time")
    .unwrap()
    .unwrap()
}

/// SIGTERM, and the exit status (within 30 s).
pub async fn stop(child: &mut tokio::process::Child) -> ExitStatus {
    let pid = Pid::from_raw(child.id().unwrap() as i32);
    kill(pid, Signal::SIGTERM).unwrap();
    tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the controller did not stop")
        .unwrap()
}
