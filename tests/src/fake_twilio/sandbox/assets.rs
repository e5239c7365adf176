//! The page's three files, compiled in.

use axum::http::header;
use axum::response::IntoResponse;

/// Nothing from elsewhere: no fonts, scripts or styles off this origin.
const POLICY: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn file(kind: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
}

pub(crate) async fn index() -> impl IntoResponse {
    file("text/html; charset=utf-8", include_str!("page/index.html"))
}

pub(crate) async fn css() -> impl IntoResponse {
    file("text/css; charset=utf-8", include_str!("page/app.css"))
}

pub(crate) async fn js() -> impl IntoResponse {
    file("text/javascript; charset=utf-8", include_str!("page/app.js"))
}
