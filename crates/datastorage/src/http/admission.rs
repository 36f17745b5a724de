//! The request-body budget: how many bytes of request bodies the service holds at once.
//!
//! A request takes its share of the budget (its `Content-Length`, or the body limit when the
//! length is not declared) before its body is read, and gives it back when its response is
//! built. A parsed body, and the events made from it, live until the writer has answered, so
//! without a bound the memory grows with the number of clients sending large batches, not with
//! what the writer can commit. Beyond the budget requests wait their turn (first come, first
//! served); the writer still has enough queued to stay busy. Requests without a body (reads) do
//! not take part.

use std::sync::Arc;

use axum::body::HttpBody;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tokio::sync::Semaphore;

use crate::metrics as m;

/// Shared by every request of one service.
#[derive(Clone)]
pub struct BodyBudget {
    permits: Arc<Semaphore>,
    /// The whole budget; no request takes more.
    total: u32,
    /// The charge of a body whose length is not declared.
    body_limit: u32,
}

impl BodyBudget {
    /// A budget of `total` bytes for bodies of at most `body_limit` bytes each.
    pub fn new(total: usize, body_limit: usize) -> BodyBudget {
        let total = u32::try_from(total).unwrap_or(u32::MAX);
        BodyBudget {
            permits: Arc::new(Semaphore::new(total as usize)),
            total,
            body_limit: u32::try_from(body_limit).unwrap_or(u32::MAX),
        }
    }

    /// The bytes a request is charged; 0 when it has no body.
    fn charge(&self, req: &Request) -> u32 {
        let hint = req.body().size_hint();
        if hint.exact() == Some(0) {
            return 0;
        }
        // A declared length above the limit is refused after at most `body_limit` bytes.
        let declared = hint
            .upper()
            .map_or(self.body_limit, |n| u32::try_from(n).unwrap_or(u32::MAX));
        declared.min(self.body_limit).min(self.total)
    }
}

/// Middleware: holds the request's share of the budget until its response is built.
pub async fn admit(State(budget): State<BodyBudget>, req: Request, next: Next) -> Response {
    let charge = budget.charge(&req);
    if charge == 0 {
        return next.run(req).await;
    }
    let permit = match budget.permits.clone().try_acquire_many_owned(charge) {
        Ok(permit) => permit,
        Err(_) => {
            metrics::counter!(m::BODY_BUDGET_WAITS).increment(1);
            match budget.permits.clone().acquire_many_owned(charge).await {
                Ok(permit) => permit,
                // The semaphore is never closed.
                Err(_) => return next.run(req).await,
            }
        }
    };
    let response = next.run(req).await;
    drop(permit);
    response
}
