//! Test support: the fake Twilio, and helpers that start the whole service against real
//! PostgreSQL and RabbitMQ with a database and queue names of its own; for `local-stack`,
//! the start of those two servers when they are installed here but stopped; a WebDriver
//! client for the browser tests of the fake's sandbox page.

pub mod bench;
pub mod fake_twilio;
pub mod harness;
pub mod local_services;
pub mod watchdog;
pub mod webdriver;
