//! `datastorage monitor`: follows a running log from outside, as a Certificate Transparency
//! monitor does, with read access and the public keys only.
//!
//! Each round it fetches the newest checkpoint (the newest the witness quorum cosigned, when
//! witness keys are given) and checks its signature (and cosignatures); checks that it is
//! consistent with the last checkpoint it accepted (a consistency proof from the service, checked
//! here); and re-verifies every new entry from its content through the export API (each leaf hash
//! recomputed, each inclusion proof checked against the new root). A finding (a bad signature, a
//! missing quorum, a smaller tree than before, another root at the same size, a proof that does
//! not verify, an entry that does not hash to its leaf) is logged on stderr, counted in
//! `datastorage_monitor_findings_total{kind}` and posted to the webhook if one is given; the
//! monitor then keeps its last accepted state, so it reports the same fault again next round
//! rather than accepting it. Its state (the size and root it accepted last) is a JSON file,
//! replaced atomically, so it survives restarts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use audit_model::checkpoint::CheckpointVerifier;
use audit_model::cosignature::WitnessPolicy;
use audit_model::merkle::Hash;
use serde::{Deserialize, Serialize};

/// What the monitor watches and how.
pub struct MonitorConfig {
    /// The service's base URL.
    pub url: String,
    pub key: CheckpointVerifier,
    pub policy: Option<WitnessPolicy>,
    pub state_file: PathBuf,
    /// A bearer token (a reader's), read from this file each round.
    pub token_file: Option<PathBuf>,
    /// A CA bundle for an `https` service.
    pub ca_file: Option<PathBuf>,
    /// Findings are also posted here as JSON.
    pub webhook: Option<String>,
}

/// What the monitor accepted last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitorState {
    pub tree_size: u64,
    #[serde(with = "hex::serde")]
    pub root_hash: Hash,
}

/// Something wrong with the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// `signature`, `quorum`, `rollback`, `fork`, `inconsistent`, `entry`.
    pub kind: &'static str,
    pub detail: String,
    /// The tree size of the checkpoint it concerns.
    pub tree_size: u64,
}

/// The outcome of one round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Round {
    /// Nothing new since the state.
    Unchanged(MonitorState),
    /// A newer checkpoint accepted, with the entries re-verified.
    Advanced { state: MonitorState, entries: u64 },
    /// The log is not what it should be; the state stays.
    Findings(Vec<Finding>),
}

/// A round could not be made (the service unreachable, an answer that is not one): not a
/// finding about the log.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(String);

pub struct Monitor {
    config: MonitorConfig,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct CheckpointAnswer {
    note: String,
}

#[derive(Deserialize)]
struct ConsistencyAnswer {
    proof: Vec<String>,
}

impl Monitor {
    pub fn new(config: MonitorConfig) -> anyhow::Result<Monitor> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(Duration::from_secs(300));
        if let Some(path) = &config.ca_file {
            for cert in reqwest::Certificate::from_pem_bundle(&std::fs::read(path)?)? {
                builder = builder.add_root_certificate(cert);
            }
        }
        Ok(Monitor {
            http: builder.build()?,
            config,
        })
    }

    /// The state accepted last, if any.
    pub fn state(&self) -> anyhow::Result<Option<MonitorState>> {
        read_state(&self.config.state_file)
    }

    async fn get(&self, path: &str) -> Result<reqwest::Response, Unavailable> {
        success(path, self.send(path).await?).await
    }

    /// A GET, whatever its status.
    async fn send(&self, path: &str) -> Result<reqwest::Response, Unavailable> {
        let mut request = self.http.get(format!("{}{path}", self.config.url));
        if let Some(file) = &self.config.token_file {
            let token = std::fs::read_to_string(file)
                .map_err(|e| Unavailable(format!("the token file {}: {e}", file.display())))?;
            request = request.bearer_auth(token.trim());
        }
        let response = request
            .send()
            .await
            .map_err(|e| Unavailable(format!("GET {path}: {e}")))?;
        Ok(response)
    }

    /// One round: fetch, check, re-verify; the state file is replaced when it advances.
    pub async fn round(&self) -> Result<Round, Unavailable> {
        let previous = self.state().map_err(|e| Unavailable(e.to_string()))?;
        let latest = if self.config.policy.is_some() {
            "/api/v1/audit/checkpoints/latest?witnessed=true"
        } else {
            "/api/v1/audit/checkpoints/latest"
        };
        let finding = |kind, detail: String, tree_size| {
            Ok(Round::Findings(vec![Finding {
                kind,
                detail,
                tree_size,
            }]))
        };
        // A log that had a witnessed checkpoint and now has none lost its witnessed history
        // (rolled back or rewritten); before the first one, none is only not yet.
        let response = self.send(latest).await?;
        if let (Some(previous), Some(policy)) = (&previous, &self.config.policy) {
            if response.status() == reqwest::StatusCode::NOT_FOUND {
                return finding(
                    "quorum",
                    format!(
                        "no checkpoint is cosigned by {} of the witnesses any more, though one of {} was accepted before",
                        policy.quorum, previous.tree_size
                    ),
                    previous.tree_size,
                );
            }
        }
        let answer: CheckpointAnswer = success(latest, response)
            .await?
            .json()
            .await
            .map_err(|e| Unavailable(format!("the checkpoint: {e}")))?;
        let checkpoint = match self.config.key.verify(&answer.note) {
            Ok(c) => c,
            Err(e) => return finding("signature", format!("the newest checkpoint: {e}"), 0),
        };
        let size = checkpoint.tree_size;
        if let Some(policy) = &self.config.policy {
            if let Err(e) = policy.check(&answer.note) {
                return finding("quorum", format!("the checkpoint of {size} is {e}"), size);
            }
        }
        let new = MonitorState {
            tree_size: size,
            root_hash: checkpoint.root_hash,
        };
        let from = previous.map_or(0, |p| p.tree_size);
        if let Some(previous) = previous {
            if size < previous.tree_size {
                return finding(
                    "rollback",
                    format!(
                        "the newest checkpoint is of {size} leaves, below the {} accepted before",
                        previous.tree_size
                    ),
                    size,
                );
            }
            if size == previous.tree_size {
                if checkpoint.root_hash != previous.root_hash {
                    return finding(
                        "fork",
                        format!(
                            "size {size} is signed with another root than the one accepted before"
                        ),
                        size,
                    );
                }
                return Ok(Round::Unchanged(previous));
            }
            let answer: ConsistencyAnswer = self
                .get(&format!(
                    "/api/v1/audit/consistency?from={}&to={size}",
                    previous.tree_size
                ))
                .await?
                .json()
                .await
                .map_err(|e| Unavailable(format!("the consistency proof: {e}")))?;
            let proof: Option<Vec<Hash>> = answer
                .proof
                .iter()
                .map(|h| hex::decode(h).ok().and_then(|b| Hash::try_from(b).ok()))
                .collect();
            let consistent = proof.is_some_and(|proof| {
                audit_model::merkle::verify_consistency(
                    previous.tree_size,
                    size,
                    &previous.root_hash,
                    &checkpoint.root_hash,
                    &proof,
                )
            });
            if !consistent {
                return finding(
                    "inconsistent",
                    format!(
                        "the checkpoint of {size} is not consistent with the {} accepted before",
                        previous.tree_size
                    ),
                    size,
                );
            }
        } else if size == 0 {
            return Ok(Round::Unchanged(new));
        }
        // The new entries, from their content, against the new root.
        let export = self
            .get(&format!(
                "/api/v1/audit/export?tree_size={size}&after_seq={from}"
            ))
            .await?
            .bytes()
            .await
            .map_err(|e| Unavailable(format!("the export: {e}")))?;
        let summary = match audit_model::export::verify_export(
            std::io::Cursor::new(&export),
            &self.config.key,
        ) {
            Ok(summary) => summary,
            Err(e) => return finding("entry", format!("the entries after {from}: {e}"), size),
        };
        write_state(&self.config.state_file, &new).map_err(|e| Unavailable(e.to_string()))?;
        Ok(Round::Advanced {
            state: new,
            entries: summary.events,
        })
    }

    /// Reports findings: stderr (as error events), the metric, the webhook.
    pub async fn report(&self, findings: &[Finding]) {
        for f in findings {
            tracing::error!(kind = f.kind, tree_size = f.tree_size, detail = %f.detail, "the log is not what it should be");
            metrics::counter!(crate::metrics::MONITOR_FINDINGS, "kind" => f.kind).increment(1);
            if let Some(url) = &self.config.webhook {
                if let Err(error) = self.http.post(url).json(f).send().await {
                    tracing::error!(%error, "cannot post the finding to the webhook");
                }
            }
        }
    }
}

/// The response when it is a success, else why the service could not be checked.
async fn success(
    path: &str,
    response: reqwest::Response,
) -> Result<reqwest::Response, Unavailable> {
    if response.status().is_success() {
        return Ok(response);
    }
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    Err(Unavailable(format!(
        "GET {path}: HTTP {status}: {}",
        body.chars().take(300).collect::<String>()
    )))
}

fn read_state(path: &Path) -> anyhow::Result<Option<MonitorState>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(serde_json::from_str(&text)?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn write_state(path: &Path, state: &MonitorState) -> anyhow::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(serde_json::to_string(state)?.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
