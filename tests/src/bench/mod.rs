//! The signup-burst benchmark (`cargo run --release -p verify-tests --bin bench`): the raw
//! limits of this machine, then a burst of starts at a running `verify-api`, its drain by
//! one and two `verify-worker`s against the fake Twilio, a run of checks, peak memory, and
//! a check that every verification got exactly one SMS.

pub mod load;
pub mod raw;
pub mod report;
