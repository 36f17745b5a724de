//! The RFC 9162 (§2.1) Merkle tree over the log's leaf hashes, in `seq` order.
//!
//! Hashing is domain separated: a leaf is `SHA-256(0x00 || data)` (see
//! [`crate::AuditEvent::leaf_hash`]), an interior node `SHA-256(0x01 || left || right)`, and the
//! empty tree's root is `SHA-256("")`. Proofs are generated from the leaf hashes and verified with
//! the RFC's iterative algorithms, which never need the tree, only the proof: that is what an
//! auditor runs, offline.

use sha2::{Digest, Sha256};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree, `SHA-256("")`.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The largest power of two strictly below `n` (for `n >= 2`).
fn split(n: usize) -> usize {
    debug_assert!(n >= 2);
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// MTH: the root of the tree over `leaves`.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// Why a proof cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("tree size {first} is larger than tree size {second}")]
    SizesReversed { first: u64, second: u64 },
    #[error("tree size {size} is larger than the log ({available} leaves)")]
    SizeOutOfRange { size: u64, available: u64 },
}

/// PATH(index, leaves): the inclusion proof of leaf `index` in the tree over `leaves`.
pub fn inclusion_proof(leaves: &[Hash], index: u64) -> Result<Vec<Hash>, ProofError> {
    if index >= leaves.len() as u64 {
        return Err(ProofError::IndexOutOfRange {
            index,
            size: leaves.len() as u64,
        });
    }
    let mut proof = Vec::new();
    path(index as usize, leaves, &mut proof);
    Ok(proof)
}

fn path(m: usize, leaves: &[Hash], out: &mut Vec<Hash>) {
    let n = leaves.len();
    if n <= 1 {
        return;
    }
    let k = split(n);
    if m < k {
        path(m, &leaves[..k], out);
        out.push(root(&leaves[k..]));
    } else {
        path(m - k, &leaves[k..], out);
        out.push(root(&leaves[..k]));
    }
}

/// PROOF(first, leaves): the consistency proof between the tree of the first `first` leaves and
/// the tree over all of `leaves`.
pub fn consistency_proof(leaves: &[Hash], first: u64) -> Result<Vec<Hash>, ProofError> {
    let second = leaves.len() as u64;
    if first > second {
        return Err(ProofError::SizesReversed { first, second });
    }
    let mut proof = Vec::new();
    if first > 0 && first < second {
        subproof(first as usize, leaves, true, &mut proof);
    }
    Ok(proof)
}

fn subproof(m: usize, leaves: &[Hash], complete: bool, out: &mut Vec<Hash>) {
    let n = leaves.len();
    if m == n {
        if !complete {
            out.push(root(leaves));
        }
        return;
    }
    let k = split(n);
    if m <= k {
        subproof(m, &leaves[..k], complete, out);
        out.push(root(&leaves[k..]));
    } else {
        subproof(m - k, &leaves[k..], false, out);
        out.push(root(&leaves[..k]));
    }
}

/// Verifies that `leaf` is at `index` of the tree of `size` leaves whose root is `root`
/// (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && &r == root
}

/// Verifies that the tree of `first` leaves with root `first_root` is a prefix of the tree of
/// `second` leaves with root `second_root` (RFC 9162 §2.1.4.2). Equal sizes need an empty proof
/// and equal roots; from the empty tree every tree is consistent with an empty proof.
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> bool {
    if first > second {
        return false;
    }
    if first == second {
        return proof.is_empty() && first_root == second_root;
    }
    if first == 0 {
        return proof.is_empty() && first_root == &empty_root();
    }
    if proof.is_empty() {
        return false;
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_root);
    }
    path.extend_from_slice(proof);
    let (mut fnode, mut snode) = (first - 1, second - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    &fr == first_root && &sr == second_root && snode == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(hex_text: &str) -> Hash {
        let v = hex::decode(hex_text).unwrap();
        v.try_into().unwrap()
    }

    /// The RFC 6962 / transparency-dev reference inputs.
    fn reference_leaves() -> Vec<Hash> {
        [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ]
        .iter()
        .map(|d| leaf_hash(&hex::decode(d).unwrap()))
        .collect()
    }

    const ROOTS: [&str; 9] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    #[test]
    fn roots_match_the_reference_vectors() {
        let leaves = reference_leaves();
        for (size, want) in ROOTS.iter().enumerate() {
            assert_eq!(root(&leaves[..size]), h(want), "size {size}");
        }
    }

    #[test]
    fn inclusion_proofs_match_the_reference_vectors() {
        let leaves = reference_leaves();
        let vectors = [
            (
                0u64,
                vec![
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                5u64,
                vec![
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
        ];
        for (index, want) in vectors {
            let want: Vec<Hash> = want.iter().map(|x| h(x)).collect();
            assert_eq!(
                inclusion_proof(&leaves, index).unwrap(),
                want,
                "leaf {index}"
            );
            assert!(verify_inclusion(
                &leaves[index as usize],
                index,
                8,
                &want,
                &h(ROOTS[8])
            ));
        }
    }

    #[test]
    fn consistency_proofs_match_the_reference_vectors() {
        let leaves = reference_leaves();
        let vectors = [
            (
                2u64,
                vec![
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                6u64,
                vec![
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
        ];
        for (first, want) in vectors {
            let want: Vec<Hash> = want.iter().map(|x| h(x)).collect();
            assert_eq!(
                consistency_proof(&leaves, first).unwrap(),
                want,
                "{first} -> 8"
            );
            assert!(verify_consistency(
                first,
                8,
                &h(ROOTS[first as usize]),
                &h(ROOTS[8]),
                &want
            ));
        }
    }

    #[test]
    fn degenerate_cases() {
        let leaves = reference_leaves();
        let r4 = root(&leaves[..4]);
        assert!(verify_consistency(4, 4, &r4, &r4, &[]));
        assert!(!verify_consistency(4, 4, &r4, &root(&leaves[..5]), &[]));
        assert!(verify_consistency(0, 8, &empty_root(), &root(&leaves), &[]));
        assert!(!verify_consistency(8, 4, &root(&leaves), &r4, &[]));
        assert!(!verify_inclusion(&leaves[0], 8, 8, &[], &root(&leaves)));
        assert_eq!(
            inclusion_proof(&leaves, 8),
            Err(ProofError::IndexOutOfRange { index: 8, size: 8 })
        );
        assert_eq!(
            consistency_proof(&leaves[..3], 5),
            Err(ProofError::SizesReversed {
                first: 5,
                second: 3
            })
        );
    }
}
