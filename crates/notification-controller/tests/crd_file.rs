//! The CRD committed under `deploy/crds/` is the one the code generates.

const COMMITTED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../deploy/crds/notificationrequests.notification.kubernaut.ai.yaml"
);

#[test]
fn the_committed_crd_is_up_to_date() {
    let generated = notification_controller::crd::crd_yaml().unwrap();
    let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
    assert!(
        generated == committed,
        "deploy/crds is stale; regenerate it with\n  \
         cargo run -p notification-controller -- crd > deploy/crds/notificationrequests.notification.kubernaut.ai.yaml"
    );
}
