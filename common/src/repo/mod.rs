//! All SQL on the `verifications`, `outbox`, `send_attempts` and `delivery_events` tables.
//!
//! Every state change is one conditional statement, so concurrent API replicas, workers and
//! callbacks cannot undo each other: a status only changes when the row is still in a state
//! from which that change is allowed (see [`crate::status`]).
//!
//! One file per table or concern; everything is re-exported here as `common::repo::…`.

/// The columns every read returns; a pending row past its expiry reads as `expired`.
macro_rules! columns {
    () => {
        "id, phone_number, \
         CASE WHEN status = 'pending' AND expires_at <= now() THEN 'expired' ELSE status END AS status, \
         delivery_status, check_attempts, max_check_attempts, send_attempts, provider_message_sid, \
         delivery_error_code, request_id, locale, channels, step, coalesce(step_started_at, created_at) AS step_started_at, test, created_at, updated_at, expires_at, seq"
    };
}

/// Where a key row is written over an existing one, and how (every statement that takes a key
/// or stores an answer for a key it had not taken): only when the key expired, or its holder's
/// lease ran out before anything was stored for it and the request is the same; the row then
/// becomes the inserted one (columns not inserted are NULL).
macro_rules! key_upsert {
    () => {
        "ON CONFLICT (scope, idem_key) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, \
           holder = EXCLUDED.holder, locked_until = EXCLUDED.locked_until, status = EXCLUDED.status, \
           body = EXCLUDED.body, verification_id = EXCLUDED.verification_id, created_at = now(), \
           expires_at = EXCLUDED.expires_at \
         WHERE idempotency_keys.expires_at <= now() \
            OR (idempotency_keys.status IS NULL AND idempotency_keys.verification_id IS NULL \
                AND idempotency_keys.locked_until < now() \
                AND idempotency_keys.fingerprint = EXCLUDED.fingerprint)"
    };
}

mod attempts;
mod claims;
mod delivery;
mod events;
mod health;
mod idempotency;
mod outbox;
mod retention;
mod sends;
mod steps;
mod verifications;

pub use attempts::*;
pub use claims::*;
pub use delivery::*;
pub use events::*;
pub use health::*;
pub use idempotency::*;
pub use outbox::*;
pub use retention::*;
pub use sends::*;
pub use steps::*;
pub use verifications::*;
