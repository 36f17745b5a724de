//! Property tests of the Merkle proofs: for random tree sizes every proof verifies, and any
//! single-bit change to a proof, a leaf or a root makes verification fail.

use audit_model::merkle::{self, Hash};
use proptest::prelude::*;

fn leaves(n: usize) -> Vec<Hash> {
    (0..n)
        .map(|i| merkle::leaf_hash(format!("event-{i}").as_bytes()))
        .collect()
}

fn flip(mut h: Hash, bit: usize) -> Hash {
    h[(bit / 8) % 32] ^= 1 << (bit % 8);
    h
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn inclusion_proofs_verify_and_any_bit_flip_fails(n in 1usize..300, seed in any::<u64>(), bit in 0usize..256) {
        let tree = leaves(n);
        let index = (seed % n as u64) as usize;
        let root = merkle::root(&tree);
        let proof = merkle::inclusion_proof(&tree, index as u64).unwrap();
        prop_assert!(merkle::verify_inclusion(&tree[index], index as u64, n as u64, &proof, &root));
        prop_assert!(!merkle::verify_inclusion(&flip(tree[index], bit), index as u64, n as u64, &proof, &root));
        prop_assert!(!merkle::verify_inclusion(&tree[index], index as u64, n as u64, &proof, &flip(root, bit)));
        if !proof.is_empty() {
            let mut bad = proof.clone();
            let k = (seed as usize / 7) % bad.len();
            bad[k] = flip(bad[k], bit);
            prop_assert!(!merkle::verify_inclusion(&tree[index], index as u64, n as u64, &bad, &root));
            prop_assert!(!merkle::verify_inclusion(&tree[index], index as u64, n as u64, &proof[..proof.len() - 1], &root));
        }
    }

    #[test]
    fn consistency_proofs_verify_and_any_bit_flip_fails(n in 2usize..300, seed in any::<u64>(), bit in 0usize..256) {
        let tree = leaves(n);
        let m = 1 + (seed % (n as u64 - 1)) as usize;
        let (first_root, second_root) = (merkle::root(&tree[..m]), merkle::root(&tree));
        let proof = merkle::consistency_proof(&tree, m as u64).unwrap();
        prop_assert!(merkle::verify_consistency(m as u64, n as u64, &first_root, &second_root, &proof));
        prop_assert!(!merkle::verify_consistency(m as u64, n as u64, &flip(first_root, bit), &second_root, &proof));
        prop_assert!(!merkle::verify_consistency(m as u64, n as u64, &first_root, &flip(second_root, bit), &proof));
        let mut bad = proof.clone();
        let k = (seed as usize / 7) % bad.len();
        bad[k] = flip(bad[k], bit);
        prop_assert!(!merkle::verify_consistency(m as u64, n as u64, &first_root, &second_root, &bad));
    }
}

#[test]
fn every_proof_of_every_small_tree_verifies() {
    let tree = leaves(64);
    for n in 0..=64usize {
        let root = merkle::root(&tree[..n]);
        for i in 0..n {
            let proof = merkle::inclusion_proof(&tree[..n], i as u64).unwrap();
            assert!(
                merkle::verify_inclusion(&tree[i], i as u64, n as u64, &proof, &root),
                "{i}/{n}"
            );
        }
        for m in 0..=n {
            let proof = merkle::consistency_proof(&tree[..n], m as u64).unwrap();
            assert!(
                merkle::verify_consistency(
                    m as u64,
                    n as u64,
                    &merkle::root(&tree[..m]),
                    &root,
                    &proof
                ),
                "{m}->{n}"
            );
        }
    }
}
