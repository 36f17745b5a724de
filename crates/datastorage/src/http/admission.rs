//! The request-body budget: how many bytes of request bodies the service holds at once, taken
//! as the bytes arrive.
//!
//! A parsed body, and the events made from it, live until the writer has answered, so without a
//! bound the memory grows with the number of clients sending large batches, not with what the
//! writer can commit. Each request is charged for the bytes of its body as they are read (by
//! [`crate::http::extract::BodyBytes`]) and the charge is given back when its response is built.
//! A client that announces a large body and sends nothing holds nothing; a slow one holds only
//! what it has sent. When the budget is spent, reading a body waits for room at most the body
//! read timeout, then the request is answered 503 with `Retry-After`
//! and gives back what it held: since a request waits while holding what it already read, a
//! bound on the wait is what keeps requests that each hold part of the budget from waiting on
//! one another forever.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tokio::sync::Notify;

use crate::metrics as m;

/// The limits on one request's body, and the budget shared by every request of one service.
#[derive(Clone)]
pub struct BodyBudget {
    shared: Arc<Shared>,
    pub rules: BodyRules,
}

struct Shared {
    /// Bytes not charged to any request.
    free: AtomicUsize,
    /// Woken when bytes are given back.
    returned: Notify,
    /// Requests waiting for room (so that giving back wakes nobody when nobody waits).
    waiting: AtomicUsize,
    /// `datastorage_body_budget_held_bytes`, looked up once.
    held: metrics::Gauge,
}

/// What a body must do to be read.
#[derive(Debug, Clone, Copy)]
pub struct BodyRules {
    /// Largest body.
    pub limit: usize,
    /// Longest wait for the next bytes of a body (and for room in the budget).
    pub read_timeout: Duration,
    /// Slowest average rate a body may arrive at, beyond the first `read_timeout`.
    pub min_rate_bytes_per_second: u64,
}

impl BodyRules {
    /// The longest a body of `length` bytes may take to arrive.
    pub fn deadline(&self, length: usize) -> Duration {
        let rate = self.min_rate_bytes_per_second.max(1);
        self.read_timeout + Duration::from_secs_f64(length as f64 / rate as f64)
    }
}

impl BodyBudget {
    /// A budget of `total` bytes for bodies read under `rules`.
    pub fn new(total: usize, rules: BodyRules) -> BodyBudget {
        BodyBudget {
            shared: Arc::new(Shared {
                free: AtomicUsize::new(total),
                returned: Notify::new(),
                waiting: AtomicUsize::new(0),
                held: metrics::gauge!(m::BODY_BUDGET_HELD),
            }),
            rules,
        }
    }

    /// Takes `bytes` if they are free.
    fn try_take(&self, bytes: usize) -> bool {
        self.shared
            .free
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |free| {
                free.checked_sub(bytes)
            })
            .is_ok()
    }

    fn give_back(&self, bytes: usize) {
        if bytes > 0 {
            self.shared.free.fetch_add(bytes, Ordering::SeqCst);
            self.shared.held.decrement(bytes as f64);
            if self.shared.waiting.load(Ordering::SeqCst) > 0 {
                self.shared.returned.notify_waiters();
            }
        }
    }
}

/// One request's share of the budget (a request extension), charged as its body is read and
/// given back when the request is answered.
#[derive(Clone)]
pub struct BodyAccount {
    budget: BodyBudget,
    held: Arc<AtomicUsize>,
}

/// The budget had no room for the next bytes within the read timeout.
#[derive(Debug)]
pub struct BudgetExhausted;

impl BodyAccount {
    pub fn rules(&self) -> BodyRules {
        self.budget.rules
    }

    /// Charges `bytes` more to this request, waiting at most the read timeout for room.
    ///
    /// Room is not queued for: whichever waiting request's next part fits first takes it. A
    /// first-come queue would make a request that holds part of the budget, and needs only its
    /// last bytes, wait behind a newer one that waits for the bytes the first holds.
    pub async fn charge(&self, bytes: usize) -> Result<(), BudgetExhausted> {
        if bytes == 0 {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + self.budget.rules.read_timeout;
        let mut waited = false;
        let shared = &self.budget.shared;
        let take = |account: &Self| {
            account.held.fetch_add(bytes, Ordering::AcqRel);
            shared.held.increment(bytes as f64);
        };
        if self.budget.try_take(bytes) {
            take(self);
            return Ok(());
        }
        loop {
            let returned = shared.returned.notified();
            tokio::pin!(returned);
            returned.as_mut().enable();
            // Counted as waiting before the try: a release either sees the count (and wakes
            // this request, registered above) or came before the try (which then sees its
            // bytes). Both orders need sequential consistency between the two atomics.
            shared.waiting.fetch_add(1, Ordering::SeqCst);
            if self.budget.try_take(bytes) {
                shared.waiting.fetch_sub(1, Ordering::SeqCst);
                take(self);
                return Ok(());
            }
            if !waited {
                waited = true;
                metrics::counter!(m::BODY_BUDGET_WAITS).increment(1);
            }
            let woken = tokio::time::timeout_at(deadline, returned).await;
            shared.waiting.fetch_sub(1, Ordering::SeqCst);
            if woken.is_err() {
                self.release();
                return Err(BudgetExhausted);
            }
        }
    }

    /// Gives back everything this request holds.
    pub fn release(&self) {
        self.budget.give_back(self.held.swap(0, Ordering::AcqRel));
    }
}

/// Middleware: gives each request an account of the budget, and gives back its charge when
/// the response is built.
pub async fn admit(State(budget): State<BodyBudget>, mut req: Request, next: Next) -> Response {
    let account = BodyAccount {
        budget,
        held: Arc::default(),
    };
    req.extensions_mut().insert(account.clone());
    let response = next.run(req).await;
    account.release();
    response
}
