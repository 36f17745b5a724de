//! `GET /api/v1/audit/events/stream`: the stored events matching the query's filters as
//! Server-Sent Events, in `seq` order, each with its `seq` as the SSE id.
//!
//! A subscriber holds a position, never a queue: the stream reads the next page of matching
//! events after its position from the database when the client has taken the previous one, and
//! when there is none waits (polling every [`POLL`]) for more. A client that reads slowly only
//! slows its own reads (the connection's flow control stops the stream from being polled), so
//! the service's memory does not grow with it; a client that reconnects with `Last-Event-ID`
//! (or `after_seq`) is served from the database what it missed, then live: nothing is lost or
//! repeated, across a restart of the service too. At most `api.stream_max_subscribers` streams
//! are open at once; beyond that a 503 problem.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use audit_model::{Problem, ProblemKind, StoredEvent};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::events::{EventView, StreamParams};
use crate::http::params::Params;
use crate::http::problem::ApiError;
use crate::http::AppState;
use crate::shutdown::Shutdown;
use crate::store::{EventQuery, LogStore, Order};

/// Events read from the database per page.
const PAGE: u32 = 200;
/// How often an idle stream looks for new events.
const POLL: Duration = Duration::from_millis(250);
/// A comment sent on an idle stream this often, so that proxies keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The open streams' permits.
#[derive(Debug, Clone)]
pub struct Subscribers(Arc<Semaphore>);

impl Subscribers {
    pub fn new(max: usize) -> Subscribers {
        Subscribers(Arc::new(Semaphore::new(max)))
    }
}

/// A stream's state: where it is, and the page it is sending.
struct Position {
    store: Arc<dyn LogStore>,
    query: EventQuery,
    page: VecDeque<StoredEvent>,
    shutdown: Shutdown,
    _permit: OwnedSemaphorePermit,
}

/// Stream the stored events matching the filters as Server-Sent Events (`id` = seq, `event:
/// audit_event`, `data` = the event as the event list shows it), from `Last-Event-ID`, else
/// `after_seq`, else from now on.
#[utoipa::path(get, path = "/api/v1/audit/events/stream", operation_id = "stream_events", tag = "events",
    params(StreamParams, ("Last-Event-ID" = Option<String>, Header, description = "The last seq received: the stream resumes after it")),
    responses(
        (status = 200, description = "An endless `text/event-stream` of the matching events", content_type = "text/event-stream", body = String),
        (status = 400, description = "A bad parameter or Last-Event-ID", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Too many streams are open", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    Params(params): Params<StreamParams>,
) -> Result<Response, ApiError> {
    let resume = match headers.get("last-event-id") {
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<i64>().ok())
                .filter(|seq| *seq >= 0)
                .ok_or_else(|| {
                    ApiError::field("Last-Event-ID", "must be a seq this stream sent")
                })?,
        ),
        None => params.after_seq.map(|s| s.0 as i64),
    };
    let permit = state
        .subscribers
        .0
        .clone()
        .try_acquire_owned()
        .map_err(|_| {
            ApiError::new(
                ProblemKind::ServiceUnavailable,
                "too many event streams are open; retry shortly",
            )
        })?;
    let from = match resume {
        Some(seq) => seq,
        None => newest_seq(state.store.as_ref()).await?,
    };
    let query = params.to_query(chrono::Utc::now(), from, PAGE);
    let position = Position {
        store: state.store.clone(),
        query,
        page: VecDeque::new(),
        shutdown: state.shutdown.clone(),
        _permit: permit,
    };
    Ok(Sse::new(events(position))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response())
}

/// The seq of the newest stored event (0 when there is none).
async fn newest_seq(store: &dyn LogStore) -> Result<i64, ApiError> {
    let newest = EventQuery {
        by_seq_from: Some(i64::MAX),
        order: Order::Desc,
        limit: 1,
        ..EventQuery::default()
    };
    let found = store.query(&newest).await.map_err(ApiError::from)?;
    Ok(found.first().map_or(0, |e| e.seq))
}

/// The stream of SSE events of `position`; it ends when the service shuts down or the
/// database cannot be read (the client then reconnects with its `Last-Event-ID`).
fn events(position: Position) -> impl Stream<Item = Result<Event, Infallible>> {
    futures::stream::unfold(position, |mut p| async move {
        loop {
            if let Some(stored) = p.page.pop_front() {
                p.query.by_seq_from = Some(stored.seq);
                let event = Event::default()
                    .id(stored.seq.to_string())
                    .event("audit_event")
                    .json_data(EventView::from(stored))
                    .unwrap_or_else(|_| Event::default().comment("unserializable event"));
                return Some((Ok(event), p));
            }
            match p.store.query(&p.query).await {
                Ok(page) if !page.is_empty() => p.page = page.into(),
                Ok(_) => {
                    tokio::select! {
                        _ = tokio::time::sleep(POLL) => {}
                        _ = p.shutdown.begun() => return None,
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "an event stream cannot read the log; it ends");
                    return None;
                }
            }
        }
    })
}
