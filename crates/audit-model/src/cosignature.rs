//! Witness cosignatures in the C2SP `tlog-cosignature` format (Ed25519, `cosignature/v1`), and
//! the quorum a verifier asks of them.
//!
//! A cosignature is a signed-note signature line on a checkpoint,
//!
//! ```text
//! — <witness name> base64(key hash (4 bytes) || timestamp (u64, big-endian) || Ed25519 signature)
//! ```
//!
//! where the key hash is SHA-256(`<name>` || `\n` || 0x04 || public key)[:4] and the signature
//! covers `cosignature/v1\ntime <timestamp>\n` followed by the checkpoint's whole body (its
//! extension lines included). It says: as of that time, this is the largest tree the witness
//! has seen for the log, and it is consistent with every one it saw before. Witness keys use
//! the signed-note text forms with the algorithm byte 0x04: `<name>+<hash>+<base64(0x04 ||
//! public key)>` and `PRIVATE+KEY+<name>+<hash>+<base64(0x04 || seed)>`.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::checkpoint::{key_hash_of, signature_lines, split_note, valid_name, CheckpointError};

/// The signed-note algorithm byte of an Ed25519 `cosignature/v1`.
pub const ALG_COSIGNATURE_V1: u8 = 0x04;

/// What a `cosignature/v1` signature covers: the header, the time line, the checkpoint body.
pub fn message(body: &str, timestamp: u64) -> Vec<u8> {
    format!("cosignature/v1\ntime {timestamp}\n{body}").into_bytes()
}

/// A witness's signing key.
pub struct Cosigner {
    name: String,
    key: SigningKey,
}

impl Cosigner {
    /// A key named `name` (the witness's name, a schema-less URL by convention) from 32 random
    /// bytes.
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<Cosigner, CheckpointError> {
        if !valid_name(name) {
            return Err(CheckpointError::Key(format!("invalid key name {name:?}")));
        }
        Ok(Cosigner {
            name: name.to_string(),
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// Parses `PRIVATE+KEY+<name>+<hash>+<base64(0x04 || seed)>`.
    pub fn parse(text: &str) -> Result<Cosigner, CheckpointError> {
        let bad = |why: &str| CheckpointError::Key(why.to_string());
        let rest = text
            .trim()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or_else(|| bad("not a signer key (no PRIVATE+KEY+ prefix)"))?;
        let (name, hash, bytes) = key_parts(rest)?;
        let seed: [u8; 32] = bytes
            .try_into()
            .map_err(|_| bad("the key is not 32 bytes"))?;
        let cosigner = Cosigner::from_seed(name, seed)?;
        if cosigner.verifier().key_id() != hash {
            return Err(bad("the key hash does not match the key"));
        }
        Ok(cosigner)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The signer key in its text form (a secret).
    pub fn to_text(&self) -> String {
        let mut bytes = vec![ALG_COSIGNATURE_V1];
        bytes.extend_from_slice(self.key.as_bytes());
        format!(
            "PRIVATE+KEY+{}+{}+{}",
            self.name,
            self.verifier().key_id(),
            B64.encode(bytes)
        )
    }

    /// The matching verifier key.
    pub fn verifier(&self) -> CosignatureVerifier {
        CosignatureVerifier {
            name: self.name.clone(),
            key: self.key.verifying_key(),
        }
    }

    /// The cosignature line (newline-terminated) of a checkpoint `body` at `timestamp`
    /// (seconds since the epoch).
    pub fn cosign(&self, body: &str, timestamp: u64) -> String {
        let signature = self.key.sign(&message(body, timestamp));
        let mut bytes = self.verifier().key_hash().to_vec();
        bytes.extend_from_slice(&timestamp.to_be_bytes());
        bytes.extend_from_slice(&signature.to_bytes());
        format!("— {} {}\n", self.name, B64.encode(bytes))
    }
}

/// `<name>`, `<hash>` and the key bytes after the 0x04 algorithm byte.
fn key_parts(text: &str) -> Result<(&str, &str, Vec<u8>), CheckpointError> {
    let bad = |why: &str| CheckpointError::Key(why.to_string());
    let mut parts = text.splitn(3, '+');
    let (Some(name), Some(hash), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad("expected <name>+<hash>+<key>"));
    };
    if !valid_name(name) {
        return Err(bad("invalid key name"));
    }
    let bytes = B64.decode(key).map_err(|_| bad("the key is not base64"))?;
    match bytes.split_first() {
        Some((&ALG_COSIGNATURE_V1, rest)) => Ok((name, hash, rest.to_vec())),
        _ => Err(bad(
            "not an Ed25519 cosignature/v1 key (algorithm byte 0x04)",
        )),
    }
}

/// A witness's public key: checks its cosignatures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CosignatureVerifier {
    name: String,
    key: VerifyingKey,
}

impl CosignatureVerifier {
    /// Parses `<name>+<hash>+<base64(0x04 || public key)>`.
    pub fn parse(text: &str) -> Result<CosignatureVerifier, CheckpointError> {
        let bad = |why: &str| CheckpointError::Key(why.to_string());
        let (name, hash, bytes) = key_parts(text.trim())?;
        let public: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| bad("the key is not 32 bytes"))?;
        let key =
            VerifyingKey::from_bytes(&public).map_err(|_| bad("not a valid Ed25519 point"))?;
        let verifier = CosignatureVerifier {
            name: name.to_string(),
            key,
        };
        if verifier.key_id() != hash {
            return Err(bad("the key hash does not match the key"));
        }
        Ok(verifier)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn key_hash(&self) -> [u8; 4] {
        key_hash_of(ALG_COSIGNATURE_V1, &self.name, self.key.as_bytes())
    }

    /// The key id: the hex key hash.
    pub fn key_id(&self) -> String {
        hex::encode(self.key_hash())
    }

    /// The verifier key in its text form.
    pub fn to_text(&self) -> String {
        let mut bytes = vec![ALG_COSIGNATURE_V1];
        bytes.extend_from_slice(self.key.as_bytes());
        format!("{}+{}+{}", self.name, self.key_id(), B64.encode(bytes))
    }

    /// The time of this witness's valid cosignature among `note`'s signature lines, if it
    /// carries one; lines of other keys are ignored.
    pub fn cosigned_at(&self, note: &str) -> Option<u64> {
        let (body, signatures) = split_note(note).ok()?;
        self.find(body, signatures)
    }

    /// The time of this witness's valid cosignature of `body` among `signatures` (signature
    /// lines, as a witness answers them).
    pub fn find(&self, body: &str, signatures: &str) -> Option<u64> {
        let expected = self.key_hash();
        signature_lines(signatures).find_map(|(name, bytes)| {
            if name != self.name || bytes.len() != 4 + 8 + 64 || bytes[..4] != expected {
                return None;
            }
            let timestamp = u64::from_be_bytes(bytes[4..12].try_into().ok()?);
            if timestamp > i64::MAX as u64 {
                return None;
            }
            let signature = Signature::from_slice(&bytes[12..]).ok()?;
            self.key
                .verify_strict(&message(body, timestamp), &signature)
                .ok()
                .map(|()| timestamp)
        })
    }
}

/// How many of which witnesses must have cosigned a checkpoint for a verifier to rely on it.
#[derive(Clone, Debug)]
pub struct WitnessPolicy {
    pub witnesses: Vec<CosignatureVerifier>,
    pub quorum: usize,
}

/// A checkpoint the policy does not accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cosigned by {cosigned} of the {quorum} witnesses required ({})", .by.join(", "))]
pub struct QuorumNotMet {
    pub cosigned: usize,
    pub quorum: usize,
    /// The witnesses whose valid cosignatures it carries.
    pub by: Vec<String>,
}

impl WitnessPolicy {
    /// The witnesses that validly cosigned `note`, if they are at least the quorum.
    pub fn check(&self, note: &str) -> Result<Vec<String>, QuorumNotMet> {
        let by: Vec<String> = self
            .witnesses
            .iter()
            .filter(|w| w.cosigned_at(note).is_some())
            .map(|w| w.name().to_string())
            .collect();
        if by.len() >= self.quorum {
            Ok(by)
        } else {
            Err(QuorumNotMet {
                cosigned: by.len(),
                quorum: self.quorum,
                by,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{Checkpoint, CheckpointSigner};
    use chrono::TimeZone;

    fn note() -> (String, String) {
        let log = CheckpointSigner::from_seed("kubernaut.ai/audit", [3; 32]).unwrap();
        let checkpoint = Checkpoint {
            origin: "kubernaut.ai/audit".into(),
            tree_size: 20852163,
            root_hash: [9; 32],
            timestamp: chrono::Utc.with_ymd_and_hms(2026, 12, 2, 12, 0, 0).unwrap(),
        };
        (log.sign(&checkpoint), checkpoint.body())
    }

    #[test]
    fn a_cosignature_verifies_and_any_change_fails() {
        let witness = Cosigner::from_seed("witness.example/w1", [5; 32]).unwrap();
        let again = Cosigner::parse(&witness.to_text()).unwrap();
        assert_eq!(again.to_text(), witness.to_text());
        let verifier = CosignatureVerifier::parse(&witness.verifier().to_text()).unwrap();
        let (note, body) = note();
        let line = witness.cosign(&body, 1679315147);
        let cosigned = format!("{note}{line}");
        assert_eq!(verifier.cosigned_at(&cosigned), Some(1679315147));
        // The log's own signature is not a cosignature.
        assert_eq!(verifier.cosigned_at(&note), None);
        // Any change to what it covers (the body) or to the line itself; the log's own
        // signature line is not covered.
        for i in (0..body.len()).chain(note.len()..cosigned.len()) {
            let mut bytes = cosigned.clone().into_bytes();
            bytes[i] ^= 0x01;
            let Ok(changed) = String::from_utf8(bytes) else {
                continue;
            };
            assert_eq!(verifier.cosigned_at(&changed), None, "byte {i} changed");
        }
        // Another key of the same name is not the witness.
        let other = Cosigner::from_seed("witness.example/w1", [6; 32]).unwrap();
        assert_eq!(other.verifier().cosigned_at(&cosigned), None);
        // A checkpoint key (0x01) is not a witness key.
        let log_key = CheckpointSigner::from_seed("w", [1; 32]).unwrap();
        assert!(CosignatureVerifier::parse(&log_key.verifier().to_text()).is_err());
    }

    /// A cosignature made with another Ed25519 implementation (`ring`, not `ed25519-dalek`),
    /// its message and line assembled here from the specification's text, verifies; and ours
    /// verifies with `ring`.
    #[test]
    fn cosignatures_agree_with_an_independent_implementation() {
        use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
        let seed = [11u8; 32];
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed).unwrap();
        let name = "witness.example.com/w1";
        let public: [u8; 32] = pair.public_key().as_ref().try_into().unwrap();
        // The key id, by the specification: SHA-256(name || "\n" || 0x04 || key)[:4].
        let mut id_input = format!("{name}\n").into_bytes();
        id_input.push(0x04);
        id_input.extend_from_slice(&public);
        let id = ring::digest::digest(&ring::digest::SHA256, &id_input);
        let mut vkey = vec![0x04];
        vkey.extend_from_slice(&public);
        let vkey = format!(
            "{name}+{}+{}",
            hex::encode(&id.as_ref()[..4]),
            B64.encode(&vkey)
        );
        let verifier = CosignatureVerifier::parse(&vkey).unwrap();
        assert_eq!(
            verifier,
            Cosigner::from_seed(name, seed).unwrap().verifier()
        );

        let (note, body) = note();
        let time: u64 = 1679315147;
        let signed = format!("cosignature/v1\ntime {time}\n{body}");
        let signature = pair.sign(signed.as_bytes());
        let mut line = id.as_ref()[..4].to_vec();
        line.extend_from_slice(&time.to_be_bytes());
        line.extend_from_slice(signature.as_ref());
        let cosigned = format!("{note}— {name} {}\n", B64.encode(&line));
        assert_eq!(verifier.cosigned_at(&cosigned), Some(time));

        // Ours, checked by ring.
        let ours = Cosigner::from_seed(name, seed).unwrap().cosign(&body, time);
        let bytes = B64
            .decode(ours.trim_end().rsplit(' ').next().unwrap())
            .unwrap();
        assert_eq!(&bytes[..4], &id.as_ref()[..4]);
        assert_eq!(&bytes[4..12], &time.to_be_bytes());
        UnparsedPublicKey::new(&ED25519, public)
            .verify(signed.as_bytes(), &bytes[12..])
            .unwrap();
    }

    /// The example answer of C2SP `tlog-witness` (three signature lines of 76 bytes: key id,
    /// timestamp, signature), byte for byte, with a cosignature of ours among them: each line
    /// parses, the ones of keys we do not hold are ignored, ours is found.
    #[test]
    fn the_specifications_example_answer_parses_and_unknown_keys_are_ignored() {
        const EXAMPLE: &str = "\
— witness.example/w1 CMp+6LWBU0anHGH5aNDTJkH/gj79sG+T6+iP2ThYN5krrDJbR1HDnucjL39QsZTSvVjyQLrdk3DXDqI5G2HgLatVs0pWh6Up69HVOw==
— witness.example/w1 I7rEps0pvK2UqkS2gSpVUDhrhVtQV9lgF6pRrWAvjJHjyWpW7VcE3SiOlVlbQNt64vWhO+DlkL0+UfzuOBMh9ChdMkP1vi/lCAsmlw==
— witness.example/w2 AWui8Sk55XjYLOijihBjhqEH6nS1ndDymE0a+6idX7pLcnoB+dhnz0854aLZgrrKbYKA7nC3HNJhm/kWl7oJlqU3rXXvpysAdyP3wQ==
";
        let lines: Vec<_> = signature_lines(EXAMPLE).collect();
        assert_eq!(lines.len(), 3);
        assert!(lines.iter().all(|(_, bytes)| bytes.len() == 4 + 8 + 64));
        assert_eq!(lines[0].1[..4], [0x08, 0xca, 0x7e, 0xe8]);
        let (note, body) = note();
        let w1 = Cosigner::from_seed("witness.example/w1", [12; 32]).unwrap();
        assert_eq!(w1.verifier().find(&body, EXAMPLE), None);
        let answer = format!("{EXAMPLE}{}", w1.cosign(&body, 1_700_000_000));
        assert_eq!(w1.verifier().find(&body, &answer), Some(1_700_000_000));
        let cosigned = format!("{note}{answer}");
        assert_eq!(w1.verifier().cosigned_at(&cosigned), Some(1_700_000_000));
    }

    #[test]
    fn the_policy_counts_distinct_valid_witnesses() {
        let (note, body) = note();
        let w: Vec<Cosigner> = (1..=3)
            .map(|i| Cosigner::from_seed(&format!("w{i}.example"), [i; 32]).unwrap())
            .collect();
        let policy = WitnessPolicy {
            witnesses: w.iter().map(Cosigner::verifier).collect(),
            quorum: 2,
        };
        let one = format!("{note}{}", w[0].cosign(&body, 1));
        let refused = policy.check(&one).unwrap_err();
        assert_eq!((refused.cosigned, refused.quorum), (1, 2));
        // The same witness twice is one witness.
        let twice = format!("{one}{}", w[0].cosign(&body, 2));
        assert_eq!(policy.check(&twice).unwrap_err().cosigned, 1);
        let two = format!("{one}{}", w[2].cosign(&body, 3));
        assert_eq!(policy.check(&two).unwrap(), ["w1.example", "w3.example"]);
    }
}
