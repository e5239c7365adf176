//! Test support: the fake Twilio, and helpers that start the whole service against real
//! PostgreSQL and RabbitMQ with a database and queue names of its own.

pub mod bench;
pub mod fake_twilio;
pub mod harness;
pub mod watchdog;
