//! The static tokens file: for the embedded default and callers outside Kubernetes.
//!
//! A YAML list; each entry holds a token's SHA-256 (never the token), the principal it
//! authenticates, its roles, optionally the event-type prefixes it may write and when it
//! expires:
//!
//! ```yaml
//! - sha256: 5f0c…            # 64 hex digits
//!   principal: notification-controller
//!   roles: [writer]
//!   event_types: [notification.]
//!   created_at: 2026-12-02T14:00:00Z
//!   expires_at: 2027-12-02T14:00:00Z   # optional
//! ```
//!
//! A client certificate (mTLS, when the listener has a client CA) is given its roles by an
//! entry naming the certificate's subject instead of a hash (the subject as
//! [`crate::tls::peer_subject`] reads it: the first URI, else the first DNS name of its
//! subjectAltName, else its common name):
//!
//! ```yaml
//! - certificate: spiffe://cluster.local/ns/kubernaut/sa/workflowexecution
//!   principal: workflowexecution
//!   roles: [writer]
//!   event_types: [workflowexecution.]
//! ```
//!
//! `datastorage token create` makes a token, prints it once and appends its entry. The file is
//! read again when it changes (checked every [`crate::watched::RELOAD_EVERY`]), without a
//! restart; a change that does not parse is logged and the entries read before stay in force.
//!
//! A presented token is hashed and compared with every entry's hash in constant time (the
//! comparison does not stop at the first differing byte, nor at the matching entry), so the
//! time of an answer says nothing about how close a guess came.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{AuthError, Principal, Role, Via};
use crate::watched::{stamp, Reloadable, Stamp};

/// Tokens made here start with this, so that a leaked one is recognisable (secret scanners).
pub const TOKEN_PREFIX: &str = "dsat_";

/// Why the tokens file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    #[error("cannot read the tokens file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the tokens file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the tokens file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// One entry of the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// SHA-256 of the token, 64 hex digits (an entry holds this or `certificate`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sha256: String,
    /// The subject of a client certificate (an entry holds this or `sha256`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    pub principal: String,
    pub roles: Vec<Role>,
    /// Event-type prefixes the principal may write (absent: any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_types: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

impl TokenEntry {
    /// An entry for a token (its hash is filled by [`create`]) of `principal` with `roles`,
    /// any event type, no expiry.
    pub fn new(principal: impl Into<String>, roles: impl IntoIterator<Item = Role>) -> TokenEntry {
        TokenEntry {
            sha256: String::new(),
            certificate: None,
            principal: principal.into(),
            roles: roles.into_iter().collect(),
            event_types: None,
            created_at: None,
            expires_at: None,
        }
    }

    /// Limited to event types starting with one of `prefixes`.
    pub fn with_event_types<S: Into<String>>(
        mut self,
        prefixes: impl IntoIterator<Item = S>,
    ) -> TokenEntry {
        self.event_types = Some(prefixes.into_iter().map(Into::into).collect());
        self
    }
}

/// A checked entry.
struct Known {
    digest: [u8; 32],
    principal: Arc<Principal>,
    expires_at: Option<DateTime<Utc>>,
}

impl Known {
    /// Its principal, unless it expired.
    fn current(&self, what: &str) -> Result<Arc<Principal>, AuthError> {
        match self.expires_at {
            Some(at) if at <= Utc::now() => Err(AuthError::Unauthenticated(format!(
                "{what} expired at {}",
                audit_model::timestamp::format(&at)
            ))),
            _ => Ok(self.principal.clone()),
        }
    }
}

struct Table {
    known: Vec<Known>,
    /// Client certificates' subjects and their principals.
    certificates: std::collections::HashMap<String, Known>,
    stamp: Stamp,
}

/// The tokens of the file, kept current with it.
pub struct StaticTokens {
    path: PathBuf,
    table: ArcSwap<Table>,
}

impl StaticTokens {
    /// Reads the file; an unreadable or invalid file stops the service from starting.
    pub fn load(path: &Path) -> Result<StaticTokens, TokensError> {
        Ok(StaticTokens {
            path: path.to_path_buf(),
            table: ArcSwap::from_pointee(read_table(path)?),
        })
    }

    /// How many tokens and certificates are known.
    pub fn len(&self) -> usize {
        let table = self.table.load();
        table.known.len() + table.certificates.len()
    }

    /// The principal of a verified client certificate whose subject is `subject`: `Ok(None)`
    /// when no entry names it, an error when its entry expired.
    pub fn certificate(&self, subject: &str) -> Result<Option<Arc<Principal>>, AuthError> {
        let table = self.table.load();
        table
            .certificates
            .get(subject)
            .map(|known| known.current("the client certificate's entry"))
            .transpose()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The principal of `token`: `Ok(None)` when no entry holds it, an error when it expired.
    pub fn authenticate(&self, token: &str) -> Result<Option<Arc<Principal>>, AuthError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let table = self.table.load();
        // Every entry is compared, each in constant time.
        let mut found = None;
        for known in &table.known {
            if bool::from(known.digest.ct_eq(&digest)) {
                found = Some(known);
            }
        }
        found
            .map(|known| known.current("the bearer token"))
            .transpose()
    }

    /// Reads the file again if it changed since it was read; `Ok(true)` when it was.
    pub fn reload_if_changed(&self) -> Result<bool, TokensError> {
        let now = stamp(&self.path).map_err(|source| TokensError::Read {
            path: self.path.clone(),
            source,
        })?;
        if now == self.table.load().stamp {
            return Ok(false);
        }
        self.table.store(Arc::new(read_table(&self.path)?));
        Ok(true)
    }
}

impl Reloadable for StaticTokens {
    fn what(&self) -> String {
        format!(
            "the tokens file {} ({} entries)",
            self.path.display(),
            self.len()
        )
    }

    fn kind(&self) -> &'static str {
        "tokens"
    }

    fn reload_if_changed(&self) -> Result<bool, String> {
        StaticTokens::reload_if_changed(self).map_err(|e| e.to_string())
    }
}

fn read_table(path: &Path) -> Result<Table, TokensError> {
    // The stamp is taken before the read: a change while reading is read again next time.
    let stamp = stamp(path).map_err(|source| TokensError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let text = std::fs::read_to_string(path).map_err(|source| TokensError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let entries = parse(&text).map_err(|message| TokensError::Invalid {
        path: path.to_path_buf(),
        message,
    })?;
    let mut known = Vec::new();
    let mut certificates = std::collections::HashMap::new();
    for e in entries {
        let via = if e.certificate.is_some() {
            Via::Certificate
        } else {
            Via::StaticToken
        };
        let mut digest = [0u8; 32];
        if e.certificate.is_none() {
            // Checked by `parse`.
            hex::decode_to_slice(&e.sha256, &mut digest).expect("a checked hash");
        }
        let entry = Known {
            digest,
            principal: Arc::new(Principal::new(e.principal, via, e.roles, e.event_types)),
            expires_at: e.expires_at,
        };
        match e.certificate {
            Some(subject) => {
                certificates.insert(subject, entry);
            }
            None => known.push(entry),
        }
    }
    Ok(Table {
        known,
        certificates,
        stamp,
    })
}

/// The entries of a tokens file's text, each checked; the message names the entry.
pub fn parse(text: &str) -> Result<Vec<TokenEntry>, String> {
    let entries: Vec<TokenEntry> = if text.trim().is_empty() {
        Vec::new()
    } else {
        // A file of comments only is an empty list.
        serde_yaml_ng::from_str::<Option<Vec<TokenEntry>>>(text)
            .map_err(|e| e.to_string())?
            .unwrap_or_default()
    };
    let mut seen = std::collections::HashSet::new();
    for (i, e) in entries.iter().enumerate() {
        let at = |message: &str| format!("entry {} ({}): {message}", i + 1, e.principal);
        match &e.certificate {
            Some(_) if !e.sha256.is_empty() => {
                return Err(at(
                    "an entry names a token (sha256) or a certificate, not both",
                ))
            }
            Some(subject) => {
                if subject.trim().is_empty() || subject.trim() != subject {
                    return Err(at(
                        "certificate must be the subject, without surrounding spaces",
                    ));
                }
                if !seen.insert(format!("certificate:{subject}")) {
                    return Err(at("the same certificate is listed twice"));
                }
            }
            None => {
                if e.sha256.len() != 64 || !e.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(at("sha256 must be 64 hex digits"));
                }
                if !seen.insert(e.sha256.to_ascii_lowercase()) {
                    return Err(at("the same token hash is listed twice"));
                }
            }
        }
        check_principal(&e.principal).map_err(|m| at(&m))?;
        if e.roles.is_empty() {
            return Err(at("roles must name at least one of writer, reader, admin"));
        }
        if let Some(scopes) = &e.event_types {
            check_scopes(scopes).map_err(|m| at(&m))?;
        }
    }
    Ok(entries)
}

/// A principal's name: what `submitted_by` records.
pub fn check_principal(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > audit_model::MAX_SHORT {
        return Err(format!(
            "the principal must be 1 to {} bytes",
            audit_model::MAX_SHORT
        ));
    }
    if name.chars().any(char::is_control) || name.trim() != name {
        return Err("the principal must not hold control characters or surrounding spaces".into());
    }
    Ok(())
}

/// Event-type prefixes: at least one, none empty.
pub fn check_scopes(scopes: &[String]) -> Result<(), String> {
    if scopes.is_empty() || scopes.iter().any(|s| s.trim().is_empty()) {
        return Err(
            "event_types must list at least one prefix, none empty (leave it out to allow any)"
                .into(),
        );
    }
    Ok(())
}

/// A new token: the prefix and 32 random bytes (base64url).
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// Makes a token for `entry` (whose `sha256` is filled here), appends the entry to the file
/// (created if absent, readable by its owner only) and returns the token, which is nowhere
/// else. The file is rewritten whole through a temporary file, so a reader never sees half an
/// entry; what it held before (comments included) is kept.
pub fn create(path: &Path, mut entry: TokenEntry) -> Result<String, TokensError> {
    let token = new_token();
    entry.sha256 = hex::encode(Sha256::digest(token.as_bytes()));
    let before = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            "# Data Storage bearer tokens: SHA-256 of each token, never the token.\n".into()
        }
        Err(source) => {
            return Err(TokensError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let invalid = |message: String| TokensError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    parse(&before).map_err(invalid)?;
    let item = serde_yaml_ng::to_string(&vec![entry]).map_err(|e| invalid(e.to_string()))?;
    let mut after = before;
    if !after.is_empty() && !after.ends_with('\n') {
        after.push('\n');
    }
    after.push_str(&item);
    parse(&after).map_err(invalid)?;
    write_private(path, after.as_bytes()).map_err(|source| TokensError::Write {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(token)
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = dir {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(principal: &str, roles: Vec<Role>, scopes: Option<Vec<&str>>) -> TokenEntry {
        let entry = TokenEntry::new(principal, roles);
        match scopes {
            Some(prefixes) => entry.with_event_types(prefixes),
            None => entry,
        }
    }

    #[test]
    fn a_created_token_authenticates_its_principal_and_only_its_hash_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.yaml");
        let nc = create(
            &path,
            entry(
                "notification-controller",
                vec![Role::Writer],
                Some(vec!["notification."]),
            ),
        )
        .unwrap();
        let ops = create(&path, entry("ops", vec![Role::Admin], None)).unwrap();
        assert!(nc.starts_with(TOKEN_PREFIX) && nc.len() == TOKEN_PREFIX.len() + 43);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&nc) && !text.contains(&ops), "{text}");
        assert!(text.starts_with("# Data Storage bearer tokens"));
        let entries = parse(&text).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(
            entries[0].sha256,
            hex::encode(Sha256::digest(nc.as_bytes()))
        );

        let tokens = StaticTokens::load(&path).unwrap();
        let p = tokens.authenticate(&nc).unwrap().unwrap();
        assert_eq!(p.name, "notification-controller");
        assert!(p.has(Role::Writer) && !p.has(Role::Reader));
        assert!(p.may_write("notification.message.sent") && !p.may_write("workflow.x"));
        let p = tokens.authenticate(&ops).unwrap().unwrap();
        assert!(p.has(Role::Admin) && p.has(Role::Reader));
        assert_eq!(tokens.authenticate("dsat_unknown").unwrap(), None);
        assert_eq!(tokens.authenticate("").unwrap(), None);
    }

    #[test]
    fn an_expired_token_is_refused_with_its_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.yaml");
        let mut e = entry("old", vec![Role::Reader], None);
        e.expires_at = Some(Utc::now() - chrono::Duration::seconds(1));
        let token = create(&path, e).unwrap();
        let tokens = StaticTokens::load(&path).unwrap();
        match tokens.authenticate(&token) {
            Err(AuthError::Unauthenticated(m)) => assert!(m.contains("expired"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_change_to_the_file_is_taken_and_a_broken_one_keeps_the_tokens_in_force() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.yaml");
        let first = create(&path, entry("a", vec![Role::Reader], None)).unwrap();
        let tokens = StaticTokens::load(&path).unwrap();
        assert!(!tokens.reload_if_changed().unwrap());
        let second = create(&path, entry("b", vec![Role::Reader], None)).unwrap();
        assert!(tokens.reload_if_changed().unwrap());
        assert_eq!(tokens.len(), 2);
        assert!(tokens.authenticate(&second).unwrap().is_some());

        std::fs::write(
            &path,
            "- sha256: nothex\n  principal: x\n  roles: [reader]\n",
        )
        .unwrap();
        let error = tokens.reload_if_changed().unwrap_err().to_string();
        assert!(error.contains("64 hex digits"), "{error}");
        assert!(tokens.authenticate(&first).unwrap().is_some());
        assert_eq!(tokens.len(), 2);
    }

    #[test]
    fn invalid_entries_are_named() {
        let h = "a".repeat(64);
        let cases = [
            (format!("- sha256: {h}\n  principal: x\n  roles: []\n"), "roles"),
            (format!("- sha256: {h}\n  principal: x\n  roles: [root]\n"), "unknown variant"),
            (format!("- sha256: {h}\n  principal: ''\n  roles: [reader]\n"), "principal"),
            (
                format!("- sha256: {h}\n  principal: x\n  roles: [reader]\n- sha256: {h}\n  principal: y\n  roles: [reader]\n"),
                "twice",
            ),
            (
                format!("- sha256: {h}\n  principal: x\n  roles: [writer]\n  event_types: []\n"),
                "event_types",
            ),
            (format!("- sha256: {h}\n  principal: x\n  roles: [reader]\n  token: t\n"), "unknown field"),
        ];
        for (text, expected) in cases {
            let error = parse(&text).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
        }
        assert!(parse("# nothing yet\n").unwrap().is_empty());
    }
}
