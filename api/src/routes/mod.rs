//! The HTTP routes, one module per group; `crate::app::router` puts them together.

pub mod events;
pub mod ops;
pub mod verifications;
pub mod views;
pub mod webhooks;
