//! `fake-twilio`: a stateful stand-in for Twilio's Messages and Calls APIs, for tests and
//! local runs.
//!
//! It checks Basic auth, answers with Twilio's JSON shapes (success and error), answers the
//! magic `To` numbers of Twilio's test credentials with their errors, can add latency and
//! inject 429/500/503 answers and timeouts (one queue and one rate for messages and calls),
//! and shows what it received (`GET /inbox?to=…`) so that a person running the service
//! locally can read the code.
//!
//! - Messages (`messages.rs`): SMS, and WhatsApp (`whatsapp:` addresses; `ContentSid` +
//!   `ContentVariables` rendered with the `whatsapp/authentication` body; a free-form `Body`
//!   fails with 63016 unless [`WhatsAppFreeForm::InsideWindow`]). Signed status callbacks:
//!   `sent`, then `delivered` (or what [`FakeTwilio::set_final_status`] says), `read` after
//!   `delivered` on WhatsApp.
//! - Calls (`calls.rs`): create, list with filters and pages, fetch. A call goes `initiated`,
//!   `ringing`, `in-progress`, `completed` (or `busy`, `no-answer`, `failed`: see
//!   [`FakeTwilio::set_call_outcome`]), posting signed callbacks for the events asked for;
//!   its TwiML (inline, or fetched from `Url` when answered) is read into the spoken text
//!   (`twiml.rs`).
//!
//! - The sandbox (`sandbox/`): a live web page at `/` over all of this, with a panel that
//!   tries the service's API and one that switches faults on.
//! - Events (`events.rs`): a receiver of the service's event webhooks at `/events` that
//!   verifies their Standard Webhooks signatures and lists them.
//!
//! Magic numbers of the fake's own (Twilio's test-credential ones are in `messages.rs` and
//! `calls.rs`): calls to `+15005550020` end `busy`, `+15005550021` `no-answer`,
//! `+15005550022` `failed`; WhatsApp messages to `whatsapp:+15005550030` fail with 63003,
//! to `whatsapp:+15005550031` with 63024.

mod call_list;
mod callbacks;
mod calls;
mod events;
mod handlers;
mod messages;
mod records;
mod sandbox;
mod state;
mod twiml;
mod voice;

pub use events::ReceivedEvent;
pub use messages::AUTHENTICATION_TEMPLATE;
pub use state::{FakeConfig, FakeTwilio, Fault, FinalStatus, MessageCallback, SentMessage, WhatsAppFreeForm};
pub use twiml::{Segment, parse as parse_twiml, spoken_text};
pub use voice::{CallCallback, CallEnd, SentCall, join_spoken_digits};
