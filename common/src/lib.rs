//! Everything `verify-api` and `verify-worker` share: settings, the domain types that make
//! bad input unrepresentable (phone numbers, codes, statuses), the PostgreSQL repository, the
//! RabbitMQ topology and job message, and Twilio's request signature (the API checks it,
//! the fake Twilio makes it).

pub mod broker;
pub mod code;
pub mod db;
pub mod guard;
pub mod job;
pub mod limits;
pub mod metric_names;
pub mod observability;
pub mod phone;
pub mod process;
pub mod reconnect;
pub mod repo;
pub mod retention;
pub mod seal;
pub mod settings;
pub mod signature;
pub mod standard_webhooks;
pub mod status;
pub mod texts;
pub mod twilio_sid;

/// Where Twilio's message status callbacks arrive at `verify-api`: the API routes it, the
/// worker names it in every message's `StatusCallback`.
pub const STATUS_CALLBACK_PATH: &str = "/v1/webhooks/twilio/status";
/// Where Twilio posts a verification call's progress.
pub const CALL_STATUS_CALLBACK_PATH: &str = "/v1/webhooks/twilio/call-status";

/// The SQL migrations in `migrations/`, embedded so that each binary applies them at start.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");
