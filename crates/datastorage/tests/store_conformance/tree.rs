//! `TreeStore`: the Merkle tree's nodes and checkpoints, and the checkpointer over them.

use super::*;

/// The stored tree: checkpoints over batches of every size, their roots equal to the RFC 9162
/// root of all leaf hashes, every inclusion and consistency proof read from the stored nodes
/// verifying, and the signed notes verifying with the public key.
async fn tree_conformance(backend: Backend) {
    use audit_model::checkpoint::CheckpointSigner;
    use audit_model::merkle;
    use datastorage::evidence::tree::{consistency_proof, inclusion_proof, Checkpointer};

    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let store = open(&db).await;
    let signer = Arc::new(CheckpointSigner::from_seed("test.example/log", [9; 32]).unwrap());
    let verifier = signer.verifier();
    let checkpointer = Checkpointer::new(store.clone(), signer);
    assert_eq!(
        checkpointer.advance().await.unwrap(),
        None,
        "nothing to sign yet"
    );

    let mut checkpoints = vec![];
    for (round, size) in [1usize, 1, 2, 5, 8, 13, 64, 100, 1].into_iter().enumerate() {
        let batch: Vec<PreparedEvent> = (0..size)
            .map(|i| prepared("rr-tree", json!({"round": round, "i": i})))
            .collect();
        store.append(&batch).await.unwrap();
        let c = checkpointer
            .advance()
            .await
            .unwrap()
            .expect("a new checkpoint");
        assert_eq!(
            verifier.verify(&c.note).unwrap().tree_size,
            c.tree_size as u64
        );
        checkpoints.push(c);
    }
    let leaves: Vec<merkle::Hash> = store
        .leaf_hashes(0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, h)| h)
        .collect();
    assert_eq!(leaves.len(), 195);
    for c in &checkpoints {
        let size = c.tree_size as usize;
        assert_eq!(c.root_hash, merkle::root(&leaves[..size]), "root of {size}");
        for index in [0, size / 3, size / 2, size - 1] {
            let proof = inclusion_proof(store.as_ref(), index as u64, size as u64)
                .await
                .unwrap();
            assert!(merkle::verify_inclusion(
                &leaves[index],
                index as u64,
                size as u64,
                &proof,
                &c.root_hash
            ));
        }
    }
    for a in &checkpoints {
        for b in checkpoints.iter().filter(|b| b.tree_size >= a.tree_size) {
            let proof = consistency_proof(store.as_ref(), a.tree_size as u64, b.tree_size as u64)
                .await
                .unwrap();
            assert!(merkle::verify_consistency(
                a.tree_size as u64,
                b.tree_size as u64,
                &a.root_hash,
                &b.root_hash,
                &proof
            ));
        }
    }
    let latest = store.checkpoints(&CheckpointQuery::Latest).await.unwrap();
    assert_eq!(latest, vec![checkpoints.last().unwrap().clone()]);
    let page = store
        .checkpoints(&CheckpointQuery::Page {
            since: None,
            after_size: 3,
            limit: 3,
        })
        .await
        .unwrap();
    let sizes: Vec<i64> = page.iter().map(|c| c.tree_size).collect();
    assert_eq!(sizes, [4, 9, 17]);
    let covering = store
        .checkpoints(&CheckpointQuery::Covering(10))
        .await
        .unwrap();
    assert_eq!(covering[0].tree_size, 17);

    // Cosignatures: one per witness and checkpoint, the first kept; the largest per witness;
    // the largest checkpoint a quorum cosigned; never changed afterwards.
    let cosign = |size: i64, witness: &str, at: i64| StoredCosignature {
        tree_size: size,
        witness: witness.into(),
        cosigned_at: at,
        line: format!("— {witness} line-{size}-{at}"),
    };
    for (size, witness) in [(9, "w1"), (9, "w2"), (17, "w1"), (195, "w3"), (17, "w3")] {
        assert!(store
            .add_cosignature(&cosign(size, witness, 1))
            .await
            .unwrap());
    }
    assert!(!store.add_cosignature(&cosign(9, "w1", 2)).await.unwrap());
    let at_9 = store.cosignatures(9).await.unwrap();
    assert_eq!(at_9, [cosign(9, "w1", 1), cosign(9, "w2", 1)]);
    let sizes = store.cosigned_sizes().await.unwrap();
    assert_eq!(
        (sizes["w1"], sizes["w2"], sizes["w3"], sizes.len()),
        (17, 9, 195, 3)
    );
    let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        store
            .witnessed(&names(&["w1", "w2", "w3"]), 2)
            .await
            .unwrap(),
        Some(17)
    );
    assert_eq!(
        store.witnessed(&names(&["w1", "w2"]), 2).await.unwrap(),
        Some(9)
    );
    assert_eq!(
        store
            .witnessed(&names(&["w1", "w2", "w3"]), 3)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.witnessed(&names(&["w3"]), 1).await.unwrap(),
        Some(195)
    );
    assert_eq!(store.witnessed(&[], 1).await.unwrap(), None);
    assert!(db
        .execute("DELETE FROM checkpoint_cosignatures WHERE witness = 'w2'")
        .await
        .is_err());
    assert!(db
        .execute("UPDATE checkpoint_cosignatures SET line = 'x' WHERE witness = 'w2'")
        .await
        .is_err());
    assert_eq!(store.cosignatures(9).await.unwrap().len(), 2);
}

#[tokio::test]
async fn postgres_tree_conforms() {
    tree_conformance(Backend::Postgres).await;
}

#[tokio::test]
async fn sqlite_tree_conforms() {
    tree_conformance(Backend::Sqlite).await;
}

/// The tree of a real store, busy: each time the checkpointer reads leaves, a writer commits one
/// more event (while `more` lasts), as happens while a checkpoint is being made under load.
struct Busy {
    inner: Arc<dyn LogStore>,
    more: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl TreeStore for Busy {
    async fn leaf_hashes(
        &self,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<(i64, Hash)>, StoreError> {
        let leaves = self.inner.leaf_hashes(after_seq, limit).await?;
        let left = self.more.load(Ordering::SeqCst);
        if left > 0 {
            self.more.store(left - 1, Ordering::SeqCst);
            self.inner
                .append(&[prepared("rr-busy", json!({"left": left}))])
                .await?;
        }
        Ok(leaves)
    }
    async fn nodes(&self, ids: &[NodeId]) -> Result<HashMap<NodeId, Hash>, StoreError> {
        self.inner.nodes(ids).await
    }
    async fn add_checkpoint(
        &self,
        nodes: &[(NodeId, Hash)],
        checkpoint: &StoredCheckpoint,
    ) -> Result<bool, StoreError> {
        self.inner.add_checkpoint(nodes, checkpoint).await
    }
    async fn checkpoints(
        &self,
        query: &CheckpointQuery,
    ) -> Result<Vec<StoredCheckpoint>, StoreError> {
        self.inner.checkpoints(query).await
    }
    async fn add_cosignature(&self, c: &StoredCosignature) -> Result<bool, StoreError> {
        self.inner.add_cosignature(c).await
    }
    async fn cosignatures(&self, tree_size: i64) -> Result<Vec<StoredCosignature>, StoreError> {
        self.inner.cosignatures(tree_size).await
    }
    async fn cosigned_sizes(&self) -> Result<HashMap<String, i64>, StoreError> {
        self.inner.cosigned_sizes().await
    }
    async fn witnessed(
        &self,
        witnesses: &[String],
        quorum: usize,
    ) -> Result<Option<i64>, StoreError> {
        self.inner.witnessed(witnesses, quorum).await
    }
}

/// The sizes of all stored checkpoints, ascending.
async fn checkpoint_sizes(store: &dyn LogStore) -> Vec<i64> {
    let page = CheckpointQuery::Page {
        since: None,
        after_size: 0,
        limit: 1_000,
    };
    let all = store.checkpoints(&page).await.unwrap();
    all.iter().map(|c| c.tree_size).collect()
}

/// A checkpointer tick covers what was committed when it began, even while writes go on (one
/// checkpoint per tick, not one per ingest batch), and a backlog of whole chunks in one tick.
async fn tick_covers_what_was_committed(backend: Backend) {
    use audit_model::checkpoint::CheckpointSigner;
    use datastorage::evidence::tree::Checkpointer;

    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let inner = open(&db).await;
    let signer = Arc::new(CheckpointSigner::from_seed("test.example/log", [9; 32]).unwrap());
    let busy: Arc<dyn TreeStore> = Arc::new(Busy {
        inner: inner.clone(),
        more: 4.into(),
    });
    let batch: Vec<PreparedEvent> = (0..3)
        .map(|i| prepared("rr-tick", json!({"i": i})))
        .collect();
    inner.append(&batch).await.unwrap();

    // Writes go on while the checkpointer works: each tick signs one checkpoint over the
    // leaves it found, and the event committed meanwhile waits for the next tick.
    let checkpointer = Checkpointer::new(busy.clone(), signer.clone());
    let first = checkpointer.tick().await.unwrap().expect("a checkpoint");
    assert_eq!(first.tree_size, 3);
    assert_eq!(inner.count().await.unwrap(), 4);
    let second = checkpointer.tick().await.unwrap().expect("a checkpoint");
    assert_eq!(second.tree_size, 4);
    assert_eq!(checkpoint_sizes(inner.as_ref()).await, [3, 4]);
    // Once writes stop, catching up covers everything (as at shutdown).
    let last = checkpointer
        .catch_up()
        .await
        .unwrap()
        .expect("a checkpoint");
    assert_eq!(last.tree_size, 7);
    assert_eq!(inner.count().await.unwrap(), 7);
    assert_eq!(checkpoint_sizes(inner.as_ref()).await, [3, 4, 5, 6, 7]);

    // A backlog beyond one chunk is covered within one tick, a checkpoint per chunk.
    let backlog: Vec<PreparedEvent> = (0..5)
        .map(|i| prepared("rr-tick", json!({"b": i})))
        .collect();
    inner.append(&backlog).await.unwrap();
    let chunked = Checkpointer::new(inner.clone(), signer).with_chunk(2);
    let c = chunked.tick().await.unwrap().expect("a checkpoint");
    assert_eq!(c.tree_size, 12);
    assert_eq!(
        checkpoint_sizes(inner.as_ref()).await,
        [3, 4, 5, 6, 7, 9, 11, 12]
    );
}

#[tokio::test]
async fn postgres_tick_covers_what_was_committed() {
    tick_covers_what_was_committed(Backend::Postgres).await;
}

#[tokio::test]
async fn sqlite_tick_covers_what_was_committed() {
    tick_covers_what_was_committed(Backend::Sqlite).await;
}
