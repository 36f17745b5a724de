//! The audit explorer at `/ui/`: a few static files compiled into the binary (no build step, no
//! CDN), served without a credential (the pages call the API with the user's token, or through
//! an authenticating proxy). The page's configuration carries the log's public key, so that the
//! browser checks checkpoints against the key the deployment pins, not one fetched beside the
//! data (`ui.public_key`, default the service's own checkpoint key).

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

use crate::http::AppState;

const INDEX: &str = include_str!("../../../ui/index.html");
const FILES: [(&str, &str, &str); 3] = [
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../ui/app.js"),
    ),
    (
        "verify.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../ui/verify.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../../../ui/style.css"),
    ),
];

/// Scripts, styles and requests from this origin only; no frames, no inline script.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
    img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn page(content_type: &'static str, body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        body,
    )
        .into_response()
}

/// `/ui` to `/ui/`.
pub async fn root() -> Redirect {
    Redirect::permanent("/ui/")
}

/// The page, its configuration filled in.
pub async fn index(State(state): State<AppState>) -> Response {
    let config = serde_json::json!({
        "public_key": state.ui_public_key,
    });
    // `</` cannot end the data block: JSON writes `/` plainly, so escape it.
    let config = config.to_string().replace("</", "<\\/");
    page(
        "text/html; charset=utf-8",
        INDEX.replace("__CONFIG__", &config),
    )
}

/// One of the page's files.
pub async fn asset(Path(name): Path<String>) -> Response {
    match FILES.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => page(content_type, body.to_string()),
        None => (StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}
