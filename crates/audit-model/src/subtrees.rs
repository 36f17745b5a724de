//! The Merkle tree as stored: perfect subtrees, so proofs need O(log n) reads, never a rehash.
//!
//! A [`NodeId`] names the root of a perfect, aligned subtree: leaves
//! `[index × 2^level, (index + 1) × 2^level)`. Level 0 nodes are the leaf hashes themselves
//! (stored with the events); every higher node is fixed once its last leaf joins the tree, and
//! never changes (the service stores those of level 4 and up and folds the lower ones from
//! their leaves when it needs them). Every range RFC 9162 hashes while building a proof splits
//! into such subtrees, so a proof is planned here as ranges ([`inclusion_ranges`],
//! [`consistency_ranges`]), each range read as its perfect subtrees ([`decompose`]) and folded
//! back ([`range_root`]).
//! The plans are checked against [`crate::merkle`]'s leaf-based proofs by property tests.

use std::ops::Range;

use crate::merkle::{node_hash, Hash};

/// The root of the perfect subtree over leaves `[index << level, (index + 1) << level)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    pub level: u8,
    pub index: u64,
}

impl NodeId {
    pub fn new(level: u8, index: u64) -> NodeId {
        NodeId { level, index }
    }

    /// The leaves it covers.
    pub fn range(self) -> Range<u64> {
        (self.index << self.level)..((self.index + 1) << self.level)
    }
}

/// The largest power of two strictly below `n` (for `n >= 2`).
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// The perfect subtrees whose roots make up the RFC 9162 hash of `range`, left to right.
/// `range` must be one that the RFC's recursion produces from `0..n` (its start a multiple of
/// its split size); every range of [`inclusion_ranges`] and [`consistency_ranges`] is.
pub fn decompose(range: Range<u64>) -> Vec<NodeId> {
    let mut out = Vec::new();
    decompose_into(range, &mut out);
    out
}

fn decompose_into(range: Range<u64>, out: &mut Vec<NodeId>) {
    let size = range.end - range.start;
    if size == 0 {
        return;
    }
    if size.is_power_of_two() && range.start.is_multiple_of(size) {
        let level = size.trailing_zeros() as u8;
        out.push(NodeId::new(level, range.start >> level));
        return;
    }
    let k = split(size);
    decompose_into(range.start..range.start + k, out);
    decompose_into(range.start + k..range.end, out);
}

/// The RFC 9162 hash of a range from the roots of its [`decompose`] nodes, in the same order.
pub fn range_root(parts: &[Hash]) -> Hash {
    // decompose() yields subtrees of strictly decreasing size (the right edge of a range), so
    // the RFC's MTH folds them from the right.
    let mut iter = parts.iter().rev();
    let Some(last) = iter.next() else {
        return crate::merkle::empty_root();
    };
    iter.fold(*last, |acc, left| node_hash(left, &acc))
}

/// The ranges whose hashes form the inclusion proof of leaf `index` in the tree of `size`
/// leaves, in proof order (RFC 9162 §2.1.3.1).
pub fn inclusion_ranges(index: u64, size: u64) -> Vec<Range<u64>> {
    let mut out = Vec::new();
    path(index, 0..size, &mut out);
    out
}

fn path(m: u64, range: Range<u64>, out: &mut Vec<Range<u64>>) {
    let n = range.end - range.start;
    if n <= 1 {
        return;
    }
    let k = split(n);
    let mid = range.start + k;
    if m < k {
        path(m, range.start..mid, out);
        out.push(mid..range.end);
    } else {
        path(m - k, mid..range.end, out);
        out.push(range.start..mid);
    }
}

/// The ranges whose hashes form the consistency proof from tree size `first` to `second`
/// (RFC 9162 §2.1.4.1); empty when `first` is 0 or equals `second`.
pub fn consistency_ranges(first: u64, second: u64) -> Vec<Range<u64>> {
    let mut out = Vec::new();
    if first > 0 && first < second {
        subproof(first, 0..second, true, &mut out);
    }
    out
}

fn subproof(m: u64, range: Range<u64>, complete: bool, out: &mut Vec<Range<u64>>) {
    let n = range.end - range.start;
    if m == n {
        if !complete {
            out.push(range);
        }
        return;
    }
    let k = split(n);
    let mid = range.start + k;
    if m <= k {
        subproof(m, range.start..mid, complete, out);
        out.push(mid..range.end);
    } else {
        subproof(m - k, mid..range.end, false, out);
        out.push(range.start..mid);
    }
}

/// The perfect subtrees of the tree of `size` leaves that have no parent yet (one per set bit
/// of `size`, largest first): all a writer needs to extend the tree.
pub fn frontier(size: u64) -> Vec<NodeId> {
    decompose(0..size)
}

/// What appending leaves to the tree produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    /// Every node of level ≥ 1 that the new leaves completed, in creation order.
    pub created: Vec<(NodeId, Hash)>,
    /// The new tree's frontier, largest first.
    pub frontier: Vec<(NodeId, Hash)>,
}

/// Extends the tree of `size` leaves (whose [`frontier`] roots are `frontier_hashes`) by
/// `leaves`.
pub fn extend(size: u64, frontier_hashes: &[Hash], leaves: &[Hash]) -> Extension {
    // The frontier as a stack of (node, hash), largest (leftmost) first.
    let mut stack: Vec<(NodeId, Hash)> = frontier(size)
        .into_iter()
        .zip(frontier_hashes.iter().copied())
        .collect();
    let mut created = Vec::new();
    for (i, leaf) in leaves.iter().enumerate() {
        let mut node = (NodeId::new(0, size + i as u64), *leaf);
        // Merge with the left neighbour while it is the sibling of the same size.
        while let Some(&(left, left_hash)) = stack.last() {
            if left.level != node.0.level
                || left.index + 1 != node.0.index
                || !left.index.is_multiple_of(2)
            {
                break;
            }
            stack.pop();
            node = (
                NodeId::new(left.level + 1, left.index / 2),
                node_hash(&left_hash, &node.1),
            );
            created.push(node);
        }
        stack.push(node);
    }
    Extension {
        created,
        frontier: stack,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{consistency_proof, inclusion_proof, leaf_hash, root};
    use proptest::prelude::*;

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    fn hash_of(all: &[Hash], node: NodeId) -> Hash {
        let r = node.range();
        root(&all[r.start as usize..r.end as usize])
    }

    fn hash_range(all: &[Hash], range: Range<u64>) -> Hash {
        let parts: Vec<Hash> = decompose(range)
            .into_iter()
            .map(|n| hash_of(all, n))
            .collect();
        range_root(&parts)
    }

    proptest! {
        #[test]
        fn planned_proofs_equal_the_rfc_proofs(n in 1u64..300, m_seed in any::<u64>(), f_seed in any::<u64>()) {
            let all = leaves(n);
            let m = m_seed % n;
            let planned: Vec<Hash> = inclusion_ranges(m, n).into_iter().map(|r| hash_range(&all, r)).collect();
            prop_assert_eq!(planned, inclusion_proof(&all, m).unwrap());
            let first = f_seed % (n + 1);
            let planned: Vec<Hash> = consistency_ranges(first, n).into_iter().map(|r| hash_range(&all, r)).collect();
            prop_assert_eq!(planned, consistency_proof(&all, first).unwrap());
            prop_assert_eq!(hash_range(&all, 0..n), root(&all));
        }

        #[test]
        fn extending_in_any_steps_creates_every_node_once(steps in proptest::collection::vec(0u64..40, 1..12)) {
            let total: u64 = steps.iter().sum();
            let all = leaves(total);
            let mut size = 0u64;
            let mut frontier_hashes: Vec<Hash> = vec![];
            let mut created: Vec<NodeId> = vec![];
            for step in steps {
                let Extension { created: nodes, frontier: new_frontier } =
                    extend(size, &frontier_hashes, &all[size as usize..(size + step) as usize]);
                for (id, h) in &nodes {
                    prop_assert_eq!(*h, hash_of(&all, *id));
                    created.push(*id);
                }
                size += step;
                prop_assert_eq!(new_frontier.iter().map(|(id, _)| *id).collect::<Vec<_>>(), frontier(size));
                frontier_hashes = new_frontier.into_iter().map(|(_, h)| h).collect();
                prop_assert_eq!(range_root(&frontier_hashes), root(&all[..size as usize]));
            }
            // Every perfect subtree of level ≥ 1 inside the tree, exactly once.
            let mut expected = vec![];
            for level in 1..64u8 {
                let width = 1u64 << level;
                if width > total { break; }
                expected.extend((0..total / width).map(|i| NodeId::new(level, i)));
            }
            created.sort();
            expected.sort();
            prop_assert_eq!(created, expected);
        }
    }
}
