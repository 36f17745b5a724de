//! File: one JSON file per delivery in a configured directory (for audits, tests and air-gapped
//! sites). Files are written to a temporary name and renamed, so a reader never sees half a file.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use chrono::Utc;
use serde_json::json;

use super::{Channel, Delivered, DeliveryError, Message};

pub(crate) struct FileChannel {
    dir: PathBuf,
}

impl FileChannel {
    pub(crate) fn new(dir: &Path) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| {
            format!(
                "cannot create the file channel directory {}: {e}",
                dir.display()
            )
        })?;
        Ok(FileChannel {
            dir: dir.to_path_buf(),
        })
    }
}

#[async_trait]
impl Channel for FileChannel {
    async fn deliver(
        &self,
        message: &Message,
        _recipient: &str,
    ) -> Result<Delivered, DeliveryError> {
        let now = Utc::now();
        let name = format!(
            "{}_{}_{}.json",
            message.namespace,
            message.name,
            now.format("%Y%m%dT%H%M%S%.6fZ")
        );
        let path = self.dir.join(&name);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let mut doc = serde_json::to_value(message)
            .map_err(|e| DeliveryError::Permanent(format!("cannot encode the message: {e}")))?;
        doc["deliveredAt"] = json!(now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
        let bytes = serde_json::to_vec_pretty(&doc)
            .map_err(|e| DeliveryError::Permanent(format!("cannot encode the message: {e}")))?;
        let write = async {
            tokio::fs::write(&tmp, &bytes).await?;
            tokio::fs::rename(&tmp, &path).await
        };
        write.await.map_err(|e| {
            DeliveryError::Retryable(format!("cannot write {}: {e}", path.display()))
        })?;
        Ok(Delivered {
            provider_response: format!("written {name}"),
        })
    }
}
