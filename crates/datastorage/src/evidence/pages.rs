//! The log read page by page in `seq` order, the next pages read (and decoded, on their own
//! tasks) while the one before them is used: the export and the verifier read this way.

use std::collections::VecDeque;
use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::task::JoinHandle;

use crate::store::{LogStore, Render, RenderedRow, ScannedLeaf, StoreError};

/// A row of a page: where it is in the log.
pub(crate) trait Positioned: Send + 'static {
    fn seq(&self) -> i64;
}

impl Positioned for ScannedLeaf {
    fn seq(&self) -> i64 {
        ScannedLeaf::seq(self)
    }
}

impl Positioned for RenderedRow {
    fn seq(&self) -> i64 {
        self.seq
    }
}

/// A page being read.
type Reading<T> = JoinHandle<Result<Vec<T>, StoreError>>;

/// Reads the rows after a seq, at most a number of them ([`LogStore::scan`]).
type Scan<T> =
    Arc<dyn Fn(i64, i64) -> BoxFuture<'static, Result<Vec<T>, StoreError>> + Send + Sync>;

/// The log's rows after a seq, a page at a time.
pub(crate) struct Pages<T> {
    scan: Scan<T>,
    /// The seq the next page starts after.
    after: i64,
    /// The last seq to read (`i64::MAX`: to the log's end).
    end: i64,
    size: i64,
    depth: usize,
    /// The reads under way: each one's first seq (after `after`) and the read.
    ahead: VecDeque<(i64, Reading<T>)>,
}

impl Pages<ScannedLeaf> {
    /// The whole log's rows, each with the leaf its content hashes to instead of its event
    /// ([`LogStore::scan_leaves`]), as [`Pages::over`] reads them.
    pub(crate) fn leaves(store: Arc<dyn LogStore>, size: i64, depth: usize) -> Self {
        let scan: Scan<ScannedLeaf> = Arc::new(move |after, limit| {
            let store = store.clone();
            Box::pin(async move { store.scan_leaves(after, limit).await })
        });
        Pages::over(scan, 0, None, size, depth)
    }
}

impl Pages<RenderedRow> {
    /// The rows after `after` up to `end`, each live row's fields given to `render` as they
    /// are read ([`LogStore::scan_rendered`]), as [`Pages::over`] reads them.
    pub(crate) fn rendered(
        store: Arc<dyn LogStore>,
        after: i64,
        end: Option<i64>,
        size: i64,
        depth: usize,
        render: Render,
    ) -> Self {
        let scan: Scan<RenderedRow> = Arc::new(move |after, limit| {
            let (store, render) = (store.clone(), render.clone());
            Box::pin(async move { store.scan_rendered(after, limit, render).await })
        });
        Pages::over(scan, after, end, size, depth)
    }
}

impl<T: Positioned> Pages<T> {
    /// The rows after `after` up to `end` (the log's end when `None`), read with `scan`, `size`
    /// per page, with up to `depth` pages read at once. The log's `seq` has no gaps, so the
    /// page after the next starts where the next one ends and is read before it arrives; where
    /// a page ends elsewhere (a gap, which the verifier reports), the reads ahead are dropped
    /// and the next page is read from where it did end.
    fn over(scan: Scan<T>, after: i64, end: Option<i64>, size: i64, depth: usize) -> Self {
        Pages {
            scan,
            after,
            end: end.unwrap_or(i64::MAX),
            size,
            depth: depth.max(1),
            ahead: VecDeque::new(),
        }
    }

    /// The next page; `None` at the end.
    pub(crate) async fn next(&mut self) -> Result<Option<Vec<T>>, StoreError> {
        if self.after >= self.end {
            return Ok(None);
        }
        let read = match self.ahead.pop_front() {
            Some((after, read)) if after == self.after => read,
            _ => {
                self.abort();
                self.read(self.after)
            }
        };
        let page = read
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
        let Some(last) = page.last() else {
            self.end = self.after;
            self.abort();
            return Ok(None);
        };
        self.after = last.seq();
        self.read_ahead();
        Ok(Some(page))
    }

    /// Starts the reads of the pages after `after`, up to `depth` of them (none past `end`),
    /// each where the one before it ends.
    fn read_ahead(&mut self) {
        let mut next = self
            .ahead
            .back()
            .map_or(self.after, |(after, _)| after + self.page_size(*after));
        while self.ahead.len() < self.depth && next < self.end {
            self.ahead.push_back((next, self.read(next)));
            next += self.page_size(next);
        }
    }

    /// The number of rows in the page after `after`: a page, or what is left up to `end`.
    fn page_size(&self, after: i64) -> i64 {
        self.size.min(self.end - after)
    }

    /// Starts reading the page after `after`.
    fn read(&self, after: i64) -> Reading<T> {
        tokio::spawn((self.scan)(after, self.page_size(after)))
    }
}

impl<T> Pages<T> {
    fn abort(&mut self) {
        for (_, read) in self.ahead.drain(..) {
            read.abort();
        }
    }
}

impl<T> Drop for Pages<T> {
    fn drop(&mut self) {
        // Pages nobody will use are read no further.
        self.abort();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use audit_model::LeafHash;

    use super::*;

    fn row(seq: i64) -> RenderedRow {
        RenderedRow {
            seq,
            leaf_hash: LeafHash::new([0; 32]),
            rendered: None,
        }
    }

    /// The reads made: each one's seq after and limit.
    type Reads = Arc<Mutex<Vec<(i64, i64)>>>;

    /// Pages over a log holding `seqs`, and the reads they made.
    fn pages_over(seqs: Vec<i64>, end: Option<i64>, size: i64) -> (Pages<RenderedRow>, Reads) {
        let reads = Arc::new(Mutex::new(Vec::new()));
        let made = reads.clone();
        let seqs = Arc::new(seqs);
        let scan: Scan<RenderedRow> = Arc::new(move |after, limit| {
            made.lock().unwrap().push((after, limit));
            let rows: Vec<RenderedRow> = seqs
                .iter()
                .filter(|s| **s > after)
                .take(limit as usize)
                .map(|s| row(*s))
                .collect();
            Box::pin(async move { Ok(rows) })
        });
        (Pages::over(scan, 0, end, size, 2), reads)
    }

    async fn all(pages: &mut Pages<RenderedRow>) -> Vec<Vec<i64>> {
        let mut got = Vec::new();
        while let Some(page) = pages.next().await.unwrap() {
            got.push(page.iter().map(|r| r.seq).collect());
        }
        got
    }

    #[tokio::test]
    async fn a_gap_free_log_is_read_once_in_pages_up_to_its_end() {
        let (mut pages, reads) = pages_over((1..=25).collect(), Some(23), 10);
        let got = all(&mut pages).await;
        assert_eq!(
            got,
            vec![
                (1..=10).collect::<Vec<_>>(),
                (11..=20).collect(),
                (21..=23).collect()
            ]
        );
        let mut reads = reads.lock().unwrap().clone();
        reads.sort();
        assert_eq!(
            reads,
            vec![(0, 10), (10, 10), (20, 3)],
            "each page read once"
        );
    }

    #[tokio::test]
    async fn a_gap_drops_the_reads_ahead_and_reads_on_from_where_the_page_ended() {
        // seq 7 is missing: the first page ends at 11, not 10.
        let seqs: Vec<i64> = (1..=30).filter(|s| *s != 7).collect();
        let (mut pages, reads) = pages_over(seqs.clone(), None, 10);
        let got = all(&mut pages).await;
        assert_eq!(got.concat(), seqs, "every row once, in order");
        assert_eq!(got[1].first(), Some(&12));
        assert!(reads.lock().unwrap().contains(&(11, 10)));
    }

    #[tokio::test]
    async fn an_unbounded_read_ends_at_the_first_empty_page() {
        let (mut pages, _) = pages_over((1..=20).collect(), None, 10);
        assert_eq!(all(&mut pages).await.len(), 2);
        assert!(pages.next().await.unwrap().is_none(), "and stays ended");
    }
}
