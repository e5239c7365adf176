//! End-to-end tests: the API and a worker against real PostgreSQL and RabbitMQ, each test
//! with its own database and queue names, and the fake Twilio on a random port.

mod abuse;
mod abuse_batches;
mod bad_input;
mod channel_rules;
mod channels;
mod checks;
mod claims;
mod delivery;
mod events;
mod fake_twilio_calls;
mod fallback;
mod fallback_edges;
mod idempotency;
mod locales;
mod operations;
mod ops;
mod pool;
mod pumping;
mod retry_timing;
mod safety;
mod sandbox;
mod secrets;
mod storage;
mod test_numbers;
mod webhooks;
