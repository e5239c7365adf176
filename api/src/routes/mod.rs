pub mod ops;
pub mod verifications;
pub mod webhooks;
