//! Signed checkpoints in the C2SP `tlog-checkpoint` / `signed-note` formats, with Ed25519.
//!
//! A checkpoint commits to the whole log: origin, tree size and root hash. We add one extension
//! line, `timestamp <RFC 3339, µs, UTC>`, which the signature covers too. The note text is
//!
//! ```text
//! <origin>
//! <tree size>
//! <base64 root hash>
//! timestamp 2026-11-27T20:00:00.000000Z
//!
//! — <key name> <base64(key hash (4 bytes) || Ed25519 signature (64 bytes))>
//! ```
//!
//! Keys use the signed-note encodings: the signer key `PRIVATE+KEY+<name>+<hash>+<base64(0x01 ||
//! seed)>` and the verifier key `<name>+<hash>+<base64(0x01 || public key)>`, where `<hash>` is the
//! first four bytes (hex) of SHA-256(`<name>` || `\n` || 0x01 || public key). Anyone holding the
//! verifier key can check a checkpoint offline; this module is all they need.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::merkle::Hash;

const ALG_ED25519: u8 = 0x01;
const SIG_PREFIX: &str = "— ";
const TIMESTAMP_PREFIX: &str = "timestamp ";

/// Why a key, note or checkpoint is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("malformed key: {0}")]
    Key(String),
    #[error("malformed checkpoint: {0}")]
    Format(String),
    #[error("no valid signature by key {0}")]
    Signature(String),
}

/// What a checkpoint commits to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub tree_size: u64,
    pub root_hash: Hash,
    pub timestamp: DateTime<Utc>,
}

impl Checkpoint {
    /// The note body that is signed (ends with a newline).
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n{TIMESTAMP_PREFIX}{}\n",
            self.origin,
            self.tree_size,
            B64.encode(self.root_hash),
            crate::timestamp::format(&self.timestamp)
        )
    }

    fn parse_body(body: &str) -> Result<Checkpoint, CheckpointError> {
        let head = TreeHead::parse(body)?;
        let timestamp = head
            .extensions
            .iter()
            .find_map(|l| l.strip_prefix(TIMESTAMP_PREFIX))
            .and_then(|t| crate::timestamp::parse(t).ok())
            .ok_or_else(|| CheckpointError::Format("no timestamp line".into()))?;
        Ok(Checkpoint {
            origin: head.origin.to_string(),
            tree_size: head.tree_size,
            root_hash: head.root_hash,
            timestamp,
        })
    }
}

/// Any C2SP checkpoint's body: origin, tree size, root hash and extension lines (what a
/// witness reads of a log it does not otherwise know).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeHead<'a> {
    pub origin: &'a str,
    pub tree_size: u64,
    pub root_hash: Hash,
    pub extensions: Vec<&'a str>,
}

impl<'a> TreeHead<'a> {
    /// Parses a note body (every line newline-terminated, no blank line).
    pub fn parse(body: &'a str) -> Result<TreeHead<'a>, CheckpointError> {
        let bad = |why: &str| CheckpointError::Format(why.to_string());
        let lines: Vec<&str> = body
            .strip_suffix('\n')
            .ok_or_else(|| bad("the body does not end with a newline"))?
            .split('\n')
            .collect();
        let [origin, size, root, rest @ ..] = lines.as_slice() else {
            return Err(bad("fewer than three lines"));
        };
        if origin.is_empty() {
            return Err(bad("empty origin"));
        }
        if rest.iter().any(|l| l.is_empty()) {
            return Err(bad("an empty line in the body"));
        }
        let tree_size: u64 = size
            .parse()
            .ok()
            .filter(|_| !size.starts_with('+') && (*size == "0" || !size.starts_with('0')))
            .ok_or_else(|| bad("the tree size is not a decimal number"))?;
        let root_hash: Hash = B64
            .decode(root)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad("the root hash is not 32 bytes of base64"))?;
        Ok(TreeHead {
            origin,
            tree_size,
            root_hash,
            extensions: rest.to_vec(),
        })
    }
}

/// A signed note's body (with its final newline) and its signature lines.
pub fn split_note(note: &str) -> Result<(&str, &str), CheckpointError> {
    let split = note
        .find("\n\n")
        .ok_or_else(|| CheckpointError::Format("no blank line before the signatures".into()))?;
    Ok((&note[..split + 1], &note[split + 2..]))
}

/// The signature lines of a note: key name and the decoded signature bytes (key hash first).
pub fn signature_lines(signatures: &str) -> impl Iterator<Item = (&str, Vec<u8>)> {
    signatures.lines().filter_map(|line| {
        let (name, sig) = line.strip_prefix(SIG_PREFIX)?.split_once(' ')?;
        Some((name, B64.decode(sig).ok()?))
    })
}

fn key_hash(name: &str, public: &[u8; 32]) -> [u8; 4] {
    key_hash_of(ALG_ED25519, name, public)
}

/// The signed-note key hash: SHA-256(`<name>` || `\n` || `alg` || public key)[:4].
pub(crate) fn key_hash_of(alg: u8, name: &str, public: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([alg]);
    h.update(public);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// Whether `name` can name a signed-note key (no `+`, space or newline).
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(['+', ' ', '\n']) && name.chars().all(|c| !c.is_control())
}

/// The key that signs checkpoints.
pub struct CheckpointSigner {
    name: String,
    key: SigningKey,
}

impl CheckpointSigner {
    /// A new key named `name` (the log's origin, by convention), from 32 random bytes.
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<CheckpointSigner, CheckpointError> {
        if !valid_name(name) {
            return Err(CheckpointError::Key(format!("invalid key name {name:?}")));
        }
        Ok(CheckpointSigner {
            name: name.to_string(),
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// Parses `PRIVATE+KEY+<name>+<hash>+<base64>`.
    pub fn parse(text: &str) -> Result<CheckpointSigner, CheckpointError> {
        let bad = |why: &str| CheckpointError::Key(why.to_string());
        let rest = text
            .trim()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or_else(|| bad("not a signer key (no PRIVATE+KEY+ prefix)"))?;
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(hash), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("expected PRIVATE+KEY+<name>+<hash>+<key>"));
        };
        let bytes = B64.decode(key).map_err(|_| bad("the key is not base64"))?;
        let [ALG_ED25519, seed @ ..] = bytes.as_slice() else {
            return Err(bad("not an Ed25519 key"));
        };
        let seed: [u8; 32] = seed
            .try_into()
            .map_err(|_| bad("the key is not 32 bytes"))?;
        let signer = CheckpointSigner::from_seed(name, seed)?;
        if hex::encode(signer.key_hash()) != hash {
            return Err(bad("the key hash does not match the key"));
        }
        Ok(signer)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn key_hash(&self) -> [u8; 4] {
        key_hash(&self.name, self.key.verifying_key().as_bytes())
    }

    /// The key id: the hex key hash.
    pub fn key_id(&self) -> String {
        hex::encode(self.key_hash())
    }

    /// The signer key in its text form (a secret).
    pub fn to_text(&self) -> String {
        let mut bytes = vec![ALG_ED25519];
        bytes.extend_from_slice(self.key.as_bytes());
        format!(
            "PRIVATE+KEY+{}+{}+{}",
            self.name,
            self.key_id(),
            B64.encode(bytes)
        )
    }

    /// The matching verifier key.
    pub fn verifier(&self) -> CheckpointVerifier {
        CheckpointVerifier {
            name: self.name.clone(),
            key: self.key.verifying_key(),
        }
    }

    /// The Ed25519 signature (base64) of an export whose content hashes to `digest`: over a
    /// domain tag and the digest's hex, so that it can never pass for a checkpoint's.
    pub fn sign_export(&self, digest: &[u8; 32]) -> String {
        B64.encode(self.key.sign(&export_message(digest)).to_bytes())
    }

    /// The signed note of `checkpoint`.
    pub fn sign(&self, checkpoint: &Checkpoint) -> String {
        let body = checkpoint.body();
        let signature = self.key.sign(body.as_bytes());
        let mut sig = self.key_hash().to_vec();
        sig.extend_from_slice(&signature.to_bytes());
        format!("{body}\n{SIG_PREFIX}{} {}\n", self.name, B64.encode(sig))
    }
}

/// What an export's signature covers: a domain tag and the hex of the export's digest.
fn export_message(digest: &[u8; 32]) -> Vec<u8> {
    let mut message = b"audit-export/v1\n".to_vec();
    message.extend_from_slice(hex::encode(digest).as_bytes());
    message
}

/// The public half: checks signed checkpoints.
#[derive(Clone, Debug)]
pub struct CheckpointVerifier {
    name: String,
    key: VerifyingKey,
}

impl CheckpointVerifier {
    /// Parses `<name>+<hash>+<base64(0x01 || public key)>`.
    pub fn parse(text: &str) -> Result<CheckpointVerifier, CheckpointError> {
        let bad = |why: &str| CheckpointError::Key(why.to_string());
        let mut parts = text.trim().splitn(3, '+');
        let (Some(name), Some(hash), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("expected <name>+<hash>+<key>"));
        };
        if !valid_name(name) {
            return Err(bad("invalid key name"));
        }
        let bytes = B64.decode(key).map_err(|_| bad("the key is not base64"))?;
        let [ALG_ED25519, public @ ..] = bytes.as_slice() else {
            return Err(bad("not an Ed25519 key"));
        };
        let public: [u8; 32] = public
            .try_into()
            .map_err(|_| bad("the key is not 32 bytes"))?;
        let key =
            VerifyingKey::from_bytes(&public).map_err(|_| bad("not a valid Ed25519 point"))?;
        if hex::encode(key_hash(name, &public)) != hash {
            return Err(bad("the key hash does not match the key"));
        }
        Ok(CheckpointVerifier {
            name: name.to_string(),
            key,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id: the hex key hash.
    pub fn key_id(&self) -> String {
        hex::encode(key_hash(&self.name, self.key.as_bytes()))
    }

    /// Whether `signature` (base64) is this key's signature of an export hashing to `digest`
    /// (see [`CheckpointSigner::sign_export`]).
    pub fn verify_export(&self, digest: &[u8; 32], signature: &str) -> bool {
        let Ok(bytes) = B64.decode(signature.trim()) else {
            return false;
        };
        let Ok(bytes) = <[u8; 64]>::try_from(bytes.as_slice()) else {
            return false;
        };
        let signature = Signature::from_bytes(&bytes);
        self.key
            .verify_strict(&export_message(digest), &signature)
            .is_ok()
    }

    /// The verifier key in its text form.
    pub fn to_text(&self) -> String {
        let mut bytes = vec![ALG_ED25519];
        bytes.extend_from_slice(self.key.as_bytes());
        format!("{}+{}+{}", self.name, self.key_id(), B64.encode(bytes))
    }

    /// Checks a signed note and returns the checkpoint it carries. Signatures by other keys are
    /// ignored (a note may carry witnesses' cosignatures); one valid signature by this key is
    /// required.
    pub fn verify(&self, note: &str) -> Result<Checkpoint, CheckpointError> {
        let body = self.verify_note(note)?;
        Checkpoint::parse_body(body)
    }

    /// Checks that a note carries a valid signature by this key and returns its body (any
    /// checkpoint's: a witness reads [`TreeHead`] from it).
    pub fn verify_note<'a>(&self, note: &'a str) -> Result<&'a str, CheckpointError> {
        let (body, signatures) = split_note(note)?;
        TreeHead::parse(body)?;
        let expected_hash = key_hash(&self.name, self.key.as_bytes());
        let signed = signature_lines(signatures).any(|(name, bytes)| {
            if name != self.name || bytes.len() != 68 || bytes[..4] != expected_hash {
                return false;
            }
            let Ok(signature) = Signature::from_slice(&bytes[4..]) else {
                return false;
            };
            self.key.verify(body.as_bytes(), &signature).is_ok()
        });
        if !signed {
            return Err(CheckpointError::Signature(self.key_id()));
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn checkpoint() -> Checkpoint {
        Checkpoint {
            origin: "kubernaut.ai/audit".into(),
            tree_size: 10_000,
            root_hash: [7; 32],
            timestamp: Utc.with_ymd_and_hms(2026, 11, 27, 20, 0, 0).unwrap(),
        }
    }

    #[test]
    fn keys_round_trip_and_notes_verify() {
        let signer = CheckpointSigner::from_seed("kubernaut.ai/audit", [42; 32]).unwrap();
        let again = CheckpointSigner::parse(&signer.to_text()).unwrap();
        assert_eq!(again.to_text(), signer.to_text());
        let verifier = CheckpointVerifier::parse(&signer.verifier().to_text()).unwrap();
        assert_eq!(verifier.key_id(), signer.key_id());

        let note = signer.sign(&checkpoint());
        assert!(note.starts_with(
            "kubernaut.ai/audit\n10000\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\ntimestamp 2026-11-27T20:00:00.000000Z\n\n— kubernaut.ai/audit "
        ));
        assert_eq!(verifier.verify(&note).unwrap(), checkpoint());
    }

    #[test]
    fn any_change_to_a_note_fails_verification() {
        let signer = CheckpointSigner::from_seed("log", [1; 32]).unwrap();
        let verifier = signer.verifier();
        let note = signer.sign(&checkpoint());
        for i in 0..note.len() {
            let mut bytes = note.clone().into_bytes();
            bytes[i] ^= 0x01;
            let Ok(changed) = String::from_utf8(bytes) else {
                continue;
            };
            assert!(
                verifier.verify(&changed).is_err(),
                "byte {i} changed and still verified"
            );
        }
        let other = CheckpointSigner::from_seed("log", [2; 32]).unwrap();
        assert!(other.verifier().verify(&note).is_err());
    }
}
