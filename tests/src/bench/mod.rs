//! The signup-burst benchmark (`cargo run --release -p verify-tests --bin bench`): the raw
//! limits of this machine, then a burst of starts at a running `verify-api`, its drain by
//! one and two `verify-worker`s against the fake Twilio, a mixed-channel burst with
//! fallbacks, a run of checks, peak memory, and a check that every verification got exactly
//! one SMS (or exactly its channels).

pub mod load;
pub mod mixed;
pub mod raw;
pub mod report;
