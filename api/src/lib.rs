//! `verify-api`: starts phone verifications (PostgreSQL + a confirmed RabbitMQ publish),
//! checks codes synchronously, receives Twilio's status callbacks, and serves ops endpoints.

pub mod abuse;
pub mod app;
mod auth;
mod batch;
mod channels;
mod client_ip;
pub mod config;
mod error;
pub mod events;
mod extract;
pub mod fallback;
pub mod idempotency;
pub mod monitor;
pub mod openapi;
pub mod outbox;
pub mod pumping;
pub mod routes;
mod state;
mod tasks;
pub mod test_numbers;

pub use app::{Application, router};
pub use batch::warm as warm_batch_statements;
pub use config::ApiConfig;
