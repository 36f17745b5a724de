//! Tamper evidence: everything that lets an outsider check the log without trusting the
//! service or its database.
//!
//! | piece | file |
//! |---|---|
//! | the Merkle tree's proofs and the checkpointer that signs tree heads | `tree.rs` |
//! | the signing key (created, loaded, written) | `keys.rs` |
//! | the witness file: every checkpoint also kept outside the database | `witness.rs` |
//! | C2SP witnesses asked to cosign every checkpoint, their cosignatures kept | `cosign.rs` |
//! | the verifiable export (NDJSON with inclusion proofs, or CSV) | `export.rs` |
//! | one correlation's events re-hashed and proven (`POST /api/v1/audit/verify-chain`) | `chain.rs` |
//! | the whole log verified (`datastorage verify`) | `verify.rs` |
//! | the log read page by page, the next pages read at once (for the last two) | `pages.rs` |
//!
//! The tree itself (RFC 9162 hashing, proofs, the C2SP checkpoint format) is in `audit-model`,
//! which does no I/O; this module reads and writes it through [`crate::store::TreeStore`].

pub mod chain;
pub mod cosign;
pub mod export;
pub mod keys;
mod pages;
pub mod tree;
pub mod verify;
pub mod witness;
