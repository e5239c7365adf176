//! What the fake Twilio's requests land on in these tests: a small server that records every
//! request (status callbacks, TwiML fetches) and answers `/twiml…` with a TwiML document.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};

/// One request the fake made.
#[derive(Debug, Clone)]
pub struct Hit {
    pub method: String,
    /// The full URL called, query string included.
    pub url: String,
    pub signature: Option<String>,
    /// Form body parameters (POST), in order.
    pub params: Vec<(String, String)>,
}

impl Hit {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Whether `X-Twilio-Signature` is right for this request, checked as the service does.
    pub fn signed_with(&self, token: &str) -> bool {
        self.signature
            .as_deref()
            .is_some_and(|s| common::signature::is_valid(token, &self.url, &self.params, s))
    }
}

#[derive(Default)]
struct Seen {
    hits: Vec<Hit>,
}

struct Shared {
    base: String,
    twiml: String,
    seen: Mutex<Seen>,
}

pub struct Receiver {
    pub base: String,
    shared: Arc<Shared>,
    stop: tokio_util::sync::CancellationToken,
}

async fn record(
    State(shared): State<Arc<Shared>>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let hit = Hit {
        method: method.to_string(),
        url: format!("{}{}", shared.base, uri),
        signature: headers
            .get("X-Twilio-Signature")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        params: serde_urlencoded::from_bytes(&body).unwrap_or_default(),
    };
    shared.seen.lock().unwrap().hits.push(hit);
    match uri.path() {
        p if p.starts_with("/twiml") => ([("content-type", "text/xml")], shared.twiml.clone()).into_response(),
        p if p.starts_with("/refuse") => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        _ => StatusCode::NO_CONTENT.into_response(),
    }
}

impl Receiver {
    /// Starts on a random port; `/twiml…` answers `twiml`.
    pub async fn start(twiml: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Shared {
            base: base.clone(),
            twiml: twiml.to_owned(),
            seen: Mutex::new(Seen::default()),
        });
        let app = axum::Router::new().fallback(record).with_state(Arc::clone(&shared));
        let stop = tokio_util::sync::CancellationToken::new();
        let until = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { until.cancelled().await })
                .await;
        });
        Self { base, shared, stop }
    }

    /// Requests received on paths starting with `prefix`, in arrival order.
    pub fn hits(&self, prefix: &str) -> Vec<Hit> {
        let seen = self.shared.seen.lock().unwrap();
        let wanted = format!("{}{prefix}", self.base);
        seen.hits
            .iter()
            .filter(|h| h.url.starts_with(&wanted))
            .cloned()
            .collect()
    }

    /// Waits until `n` requests arrived on `prefix` (or panics after 10 s), then a little
    /// longer to catch any extra one, and returns them all.
    pub async fn wait_for(&self, prefix: &str, n: usize) -> Vec<Hit> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.hits(prefix).len() < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "waited 10 s for {n} requests on {prefix}, got {:?}",
                self.hits(prefix)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
        self.hits(prefix)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
