//! `fake-twilio`: a stateful stand-in for Twilio's Messages API, for tests and local runs.
//!
//! It checks Basic auth, answers with Twilio's JSON shapes (success and error), answers the
//! magic `To` numbers of Twilio's test credentials with their errors, can add latency and
//! inject 429/500/503 answers and timeouts, posts signed status callbacks (`sent`, then
//! `delivered`) to each message's `StatusCallback`, and shows what it received
//! (`GET /inbox?to=…`) so that a person running the service locally can read the code.

mod handlers;
mod state;

pub use state::{FakeConfig, FakeTwilio, Fault, FinalStatus, SentMessage};
