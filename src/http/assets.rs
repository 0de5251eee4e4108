//! The dashboard's files, embedded in the binary at build time (`src/http/assets/`): the
//! page loads nothing from anywhere else. A small single-page app: `index.html`, its
//! script (`app.js`, the pages; `charts.js`, hand-written canvas charts) and `style.css`.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Name, content type, bytes.
const FILES: &[(&str, &str, &str)] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/app.js"),
    ),
    (
        "charts.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/charts.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("assets/style.css"),
    ),
];

/// `GET /`: the dashboard page.
pub async fn index() -> Response {
    file(
        "text/html; charset=utf-8",
        include_str!("assets/index.html"),
    )
}

/// `GET /assets/{name}`.
pub async fn asset(Path(name): Path<String>) -> Response {
    match FILES.iter().find(|(n, _, _)| *n == name) {
        Some((_, kind, body)) => file(kind, body),
        None => (
            StatusCode::NOT_FOUND,
            format!("no dashboard file '{name}'\n"),
        )
            .into_response(),
    }
}

fn file(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            // Embedded in this build: a new binary may change them.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}
