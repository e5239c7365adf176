//! The fake's memory: messages and calls received, faults to inject, how callbacks end.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use super::records::{Fault, FinalStatus, MessageCallback, SentMessage, WhatsAppFreeForm};

#[derive(Debug, Clone)]
pub struct FakeConfig {
    pub account_sid: String,
    pub auth_token: String,
    /// Post `sent` and `delivered` callbacks after each accepted message.
    pub callbacks: bool,
    /// Pause before each callback.
    pub callback_delay: Duration,
    /// How long an injected timeout holds the request.
    pub timeout_hold: Duration,
    /// What a WhatsApp `Body` without `ContentSid` does (changeable at run time).
    pub whatsapp_free_form: WhatsAppFreeForm,
    /// The secret the event receiver verifies signatures with (`None`: none verifies).
    pub events_secret: Option<common::standard_webhooks::EventSecret>,
    /// Deliveries the event receiver keeps (the newest).
    pub events_kept: usize,
    /// Messages, calls and failed create requests kept, each the newest (`None`: all of them,
    /// as tests that count every message need). A fake that runs for days (`fake-twilio`,
    /// `local-stack`) keeps a bounded number, so its memory stays bounded too.
    pub kept: Option<usize>,
}

impl Default for FakeConfig {
    fn default() -> Self {
        Self {
            account_sid: "AC00000000000000000000000000000001".into(),
            auth_token: "fake-auth-token".into(),
            callbacks: true,
            callback_delay: Duration::from_millis(20),
            timeout_hold: Duration::from_secs(30),
            whatsapp_free_form: WhatsAppFreeForm::OutsideWindow,
            events_secret: None,
            events_kept: 10_000,
            kept: None,
        }
    }
}

#[derive(Default)]
pub(crate) struct Memory {
    pub messages: Vec<SentMessage>,
    pub calls: Vec<super::voice::SentCall>,
    /// Create requests received (`Messages.json` and `Calls.json`), whatever their answer.
    pub create_calls: u64,
    /// When each create request with a `To` arrived, and that `To`.
    pub create_call_log: Vec<(std::time::Instant, String)>,
    pub faults: VecDeque<Fault>,
    pub fault_rate: f64,
    pub latency: Duration,
    pub final_status: HashMap<String, FinalStatus>,
    pub call_outcomes: HashMap<String, super::voice::CallEnd>,
    pub whatsapp_free_form: WhatsAppFreeForm,
    pub callbacks_sent: u64,
    pub events: super::events::Received,
    /// Create requests answered with an injected fault, for the sandbox's threads.
    pub faulted: Vec<super::sandbox::FaultedRequest>,
    /// Where the sandbox's "try it" panel sends its requests (see [`FakeTwilio::set_sandbox_api`]).
    pub sandbox_api: Option<super::sandbox::SandboxApi>,
}

impl Memory {
    /// Drops the oldest messages, calls and failed requests beyond `kept`, once they are an
    /// eighth over it (so that the cost of moving the rest is spread over many pushes).
    pub fn trim(&mut self, kept: Option<usize>) {
        let Some(kept) = kept else { return };
        fn oldest_out<T>(list: &mut Vec<T>, kept: usize) {
            if list.len() > kept + kept / 8 {
                list.drain(..list.len() - kept);
            }
        }
        oldest_out(&mut self.messages, kept);
        oldest_out(&mut self.calls, kept);
        oldest_out(&mut self.faulted, kept);
        oldest_out(&mut self.create_call_log, kept);
    }
}

pub(crate) struct Shared {
    pub config: FakeConfig,
    pub memory: Mutex<Memory>,
    pub http: reqwest::Client,
    /// Woken whenever a message is accepted, a callback delivered or an event received.
    pub changed: tokio::sync::Notify,
    /// Counts those changes, so that a reader (the sandbox's live stream) knows whether it has
    /// seen the newest.
    pub version: std::sync::atomic::AtomicU64,
}

impl Shared {
    /// Something the fake shows changed: wake the waiters and count it.
    pub fn touch(&self) {
        self.version.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.changed.notify_waiters();
    }
}

/// A running fake, bound to a port of 127.0.0.1; stops when dropped.
pub struct FakeTwilio {
    pub base_url: String,
    pub(crate) shared: Arc<Shared>,
    stop: CancellationToken,
}

impl FakeTwilio {
    /// Starts on a random port.
    pub async fn start(config: FakeConfig) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding the fake Twilio");
        Self::serve(listener, config)
    }

    /// Serves on `listener` in the background.
    pub fn serve(listener: TcpListener, config: FakeConfig) -> Self {
        let base_url = format!("http://{}", listener.local_addr().expect("bound address"));
        let memory = Memory {
            whatsapp_free_form: config.whatsapp_free_form,
            ..Memory::default()
        };
        let shared = Arc::new(Shared {
            config,
            memory: Mutex::new(memory),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .build()
                .expect("http client"),
            changed: tokio::sync::Notify::new(),
            version: std::sync::atomic::AtomicU64::new(0),
        });
        let stop = CancellationToken::new();
        let app = super::handlers::router(Arc::clone(&shared));
        let until = stop.clone();
        tokio::spawn(async move {
            let server = axum::serve(listener, app).with_graceful_shutdown(async move { until.cancelled().await });
            if let Err(e) = server.await {
                tracing::error!(error = %e, "fake Twilio stopped");
            }
        });
        Self { base_url, shared, stop }
    }

    /// The API the sandbox page's "try it" panel and queue strip talk to (through the fake,
    /// which adds the bearer `api_key`): the page is served by the fake, the API elsewhere.
    pub fn set_sandbox_api(&self, base_url: &str, api_key: &str) {
        self.memory().sandbox_api = Some(super::sandbox::SandboxApi {
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key: api_key.to_owned(),
        });
    }

    pub fn config(&self) -> &FakeConfig {
        &self.shared.config
    }

    pub(crate) fn memory(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.shared.memory.lock().expect("fake Twilio memory")
    }

    /// Every message accepted, oldest first.
    pub fn messages(&self) -> Vec<SentMessage> {
        self.memory().messages.clone()
    }

    /// The messages accepted after the first `seen`, oldest first: a reader that keeps count
    /// of what it has read copies each message once, however many the fake holds.
    pub fn messages_after(&self, seen: usize) -> Vec<SentMessage> {
        self.memory()
            .messages
            .get(seen..)
            .map(<[_]>::to_vec)
            .unwrap_or_default()
    }

    /// Resolves when a message is next accepted or a callback delivered. Created before
    /// reading the state, it also resolves for one that arrives in between.
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.shared.changed.notified()
    }

    pub fn messages_to(&self, to: &str) -> Vec<SentMessage> {
        self.memory().messages.iter().filter(|m| m.to == to).cloned().collect()
    }

    /// Create requests received (messages and voice calls), whatever their answer.
    pub fn create_calls(&self) -> u64 {
        self.memory().create_calls
    }

    /// When each create call to `to` arrived (whatever its answer), oldest first.
    pub fn create_call_times(&self, to: &str) -> Vec<std::time::Instant> {
        let memory = self.memory();
        memory
            .create_call_log
            .iter()
            .filter(|(_, t)| t == to)
            .map(|(at, _)| *at)
            .collect()
    }

    /// Status callbacks posted so far.
    pub fn callbacks_sent(&self) -> u64 {
        self.memory().callbacks_sent
    }

    /// Queues faults for the next create calls, in order.
    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.memory().faults.extend(faults);
    }

    /// Delay added to every create call.
    pub fn set_latency(&self, latency: Duration) {
        self.memory().latency = latency;
    }

    /// Fraction (0..1) of create calls that get a random 500, 503 or timeout.
    pub fn set_fault_rate(&self, rate: f64) {
        self.memory().fault_rate = rate;
    }

    /// Records a message as if it had been created (by a call whose answer was lost).
    pub fn inject_message(&self, to: &str, body: &str) -> String {
        let sid = format!("SM{:032x}", rand::random::<u128>());
        let mut memory = self.memory();
        memory.messages.push(SentMessage {
            sid: sid.clone(),
            to: to.to_owned(),
            from: None,
            messaging_service_sid: None,
            body: body.to_owned(),
            status_callback: None,
            validity_period: None,
            date_created: time::OffsetDateTime::now_utc(),
            channel: if to.starts_with("whatsapp:") { "whatsapp" } else { "sms" }.to_owned(),
            content_sid: None,
            content_variables: None,
            status: "delivered".to_owned(),
            error_code: None,
            callbacks: Vec::new(),
        });
        memory.trim(self.shared.config.kept);
        drop(memory);
        self.shared.touch();
        sid
    }

    /// Makes messages to `to` end in `status` (e.g. `undelivered` with 30003; for WhatsApp
    /// give the prefixed address, e.g. `whatsapp:+1…` with `failed` and 63024).
    pub fn set_final_status(&self, to: &str, status: &str, error_code: Option<i32>) {
        self.memory().final_status.insert(
            to.to_owned(),
            FinalStatus {
                status: status.to_owned(),
                error_code,
            },
        );
    }
}

impl FakeTwilio {
    /// Waits until `done` holds (checked after every message and callback), or panics
    /// after `limit`.
    pub async fn wait_until(&self, limit: Duration, what: &str, mut done: impl FnMut(&Self) -> bool) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let changed = self.shared.changed.notified();
            if done(self) {
                return;
            }
            // Also wake on a timer: a condition may depend on state outside the fake.
            let step = tokio::time::Instant::now() + Duration::from_millis(50);
            if tokio::time::Instant::now() >= deadline {
                panic!("timed out after {limit:?} waiting for {what}");
            }
            let _ = tokio::time::timeout_at(step.min(deadline), changed).await;
        }
    }
}

impl Drop for FakeTwilio {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
