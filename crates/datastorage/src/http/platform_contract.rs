//! What the platform's generated client can decode, read from its API document
//! (`api/platform/data-storage-v1.yaml`, embedded at build time).
//!
//! Their client decodes a page of events as a whole, and refuses it when one event does not
//! decode: its `event_category` must be one of the document's, and its `event_data` must carry
//! an `event_type` the document's discriminator maps to a payload schema. So the platform's
//! answers of the event query hold only such events (see `store::query`).

use std::sync::LazyLock;

use serde_json::Value;

/// The vendored document.
const DOCUMENT: &str = include_str!("../../../../api/platform/data-storage-v1.yaml");

/// The categories and the payload types the platform's decoder knows.
pub struct Decodable {
    pub categories: Vec<String>,
    pub payload_types: Vec<String>,
}

/// Read once from the embedded document.
pub static DECODABLE: LazyLock<Decodable> = LazyLock::new(|| {
    let doc: Value =
        serde_yaml_ng::from_str(DOCUMENT).expect("the embedded platform document is YAML");
    let request = &doc["components"]["schemas"]["AuditEventRequest"]["properties"];
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect()
    };
    let categories = strings(&request["event_category"]["enum"]);
    let payload_types: Vec<String> = request["event_data"]["discriminator"]["mapping"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    assert!(
        !categories.is_empty() && !payload_types.is_empty(),
        "the embedded platform document names its categories and payload types"
    );
    Decodable {
        categories,
        payload_types,
    }
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_names_what_the_decoder_knows() {
        let d = &*DECODABLE;
        assert_eq!(d.categories.len(), 14);
        assert!(d.categories.iter().any(|c| c == "effectiveness"));
        assert!(d.payload_types.len() > 100);
        assert!(d
            .payload_types
            .iter()
            .any(|t| t == "signalprocessing.signal.processed"));
    }
}
