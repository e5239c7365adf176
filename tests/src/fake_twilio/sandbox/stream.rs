//! `GET /sandbox/stream`: server-sent events telling the page that something changed.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;

use crate::fake_twilio::state::Shared;

/// Least time between two events: a burst of thousands of messages a second makes a few
/// page refreshes a second, not thousands.
const EVERY: Duration = Duration::from_millis(250);

/// One `change` event (data: the fake's change count) after each change, at most one per
/// [`EVERY`]; the first at once, so that a page (re)connecting reads the state it missed.
pub(crate) async fn stream(State(shared): State<Arc<Shared>>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let events = futures_util::stream::unfold((shared, None::<u64>), |(shared, sent)| async move {
        if sent.is_some() {
            tokio::time::sleep(EVERY).await;
        }
        let version = loop {
            let changed = shared.changed.notified();
            tokio::pin!(changed);
            // Registered before reading the count: a change after the read wakes it.
            changed.as_mut().enable();
            let version = shared.version.load(Ordering::SeqCst);
            if sent != Some(version) {
                break version;
            }
            changed.await;
        };
        let event = Event::default().event("change").data(version.to_string());
        Some((Ok(event), (shared, Some(version))))
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
