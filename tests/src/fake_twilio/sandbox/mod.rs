//! The sandbox: a web page at `/` that shows everything the fake received, per phone number,
//! live, and lets a person try the whole flow (start, read the code, check) and switch faults
//! on. Plain HTML, CSS and JavaScript compiled into the binary (`page/`), no build step and
//! nothing fetched from elsewhere; it lives with the fake, so the service's own binaries do
//! not carry it.
//!
//! - `GET /`, `/sandbox/app.css`, `/sandbox/app.js`: the page.
//! - `GET /sandbox/numbers`: the numbers the fake received something for, newest first.
//! - `GET /sandbox/thread?number=+1…`: everything for one number, oldest first (messages,
//!   calls, requests answered with an injected fault), with the code found in each.
//! - `GET /sandbox/stream`: server-sent events, one `change` whenever that changes.
//! - `/sandbox/api/v1/…`: the API, with the development key added (the page's "try it"
//!   panel and queue strip), once [`super::FakeTwilio::set_sandbox_api`] named it.
//! - `GET /_fake/faults`: the faults and latency now in force (the page's fault panel sets
//!   them with `POST /_fake/faults`).

mod assets;
mod proxy;
mod stream;
mod thread;

use axum::Router;
use axum::routing::{any, get};
use serde::Serialize;

/// The API the page talks to through the fake.
#[derive(Debug, Clone)]
pub struct SandboxApi {
    pub base_url: String,
    pub api_key: String,
}

/// A create request (message or call) answered with an injected fault.
#[derive(Debug, Clone, Serialize)]
pub struct FaultedRequest {
    #[serde(with = "time::serde::rfc3339")]
    pub at: time::OffsetDateTime,
    /// As given (`whatsapp:+1…` for WhatsApp).
    pub to: String,
    /// `message` or `call`.
    pub resource: &'static str,
    /// What Twilio would have answered: `503 Service Unavailable`, `timeout`, …
    pub answer: String,
    /// Whether the resource was created all the same (the answer was lost after it).
    pub created: bool,
}

/// The sandbox's routes, merged into the fake's.
pub(crate) fn routes() -> Router<std::sync::Arc<super::state::Shared>> {
    Router::new()
        .route("/", get(assets::index))
        .route("/sandbox/app.css", get(assets::css))
        .route("/sandbox/app.js", get(assets::js))
        .route("/sandbox/numbers", get(thread::numbers))
        .route("/sandbox/thread", get(thread::thread))
        .route("/sandbox/stream", get(stream::stream))
        .route("/sandbox/api/{*path}", any(proxy::forward))
}

/// The number a `To` names, without its channel prefix (`whatsapp:+1…` → `+1…`).
pub(crate) fn bare(to: &str) -> &str {
    to.split_once(':').map_or(to, |(_, number)| number)
}
