//! The send job: the message `verify-api` publishes to `sms.send` and `verify-worker` consumes.
//!
//! The code travels in the job because only the API holds `VERIFY_SECRET` and the database
//! keeps only an HMAC of the code: the broker holds the plain code until the SMS is sent, so
//! access to the broker must be guarded like access to the SMS itself. The job carries no phone
//! number: the worker reads it from PostgreSQL, the single source of truth.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The version this build writes and understands.
pub const JOB_VERSION: u32 = 1;

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendJob {
    /// Message format version ([`JOB_VERSION`]).
    pub v: u32,
    pub verification_id: Uuid,
    /// The plain code, to be put into the SMS body.
    pub code: String,
    /// The request id of the start, so one verification can be followed through the logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// How many Twilio calls were made for this job before it was (re)published.
    #[serde(default)]
    pub attempt: u32,
    /// When a deferred job is due (milliseconds since the Unix epoch). A delay queue holds a
    /// job for its tier's fixed time, which may be shorter than the delay planned; a job that
    /// comes back before this time waits for the rest. Absent on a job never deferred.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at_ms: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("not a send job: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("unsupported job version {0}")]
    Version(u32),
}

impl SendJob {
    pub fn new(verification_id: Uuid, code: String, request_id: Option<String>) -> Self {
        Self {
            v: JOB_VERSION,
            verification_id,
            code,
            request_id,
            attempt: 0,
            due_at_ms: None,
        }
    }

    /// Makes the job due `delay` from `now`.
    pub fn due_after(&mut self, now: SystemTime, delay: Duration) {
        let due = now + delay;
        let ms = due.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
        self.due_at_ms = Some(i64::try_from(ms).unwrap_or(i64::MAX));
    }

    /// How long the job still has to wait at `now` (`None` when it is due).
    pub fn wait_left(&self, now: SystemTime) -> Option<Duration> {
        let due = UNIX_EPOCH + Duration::from_millis(u64::try_from(self.due_at_ms?).ok()?);
        due.duration_since(now).ok().filter(|left| !left.is_zero())
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a send job always serialises")
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, JobError> {
        let job: Self = serde_json::from_slice(bytes)?;
        if job.v != JOB_VERSION {
            return Err(JobError::Version(job.v));
        }
        Ok(job)
    }
}

impl fmt::Debug for SendJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendJob")
            .field("v", &self.v)
            .field("verification_id", &self.verification_id)
            .field("code", &"[redacted]")
            .field("request_id", &self.request_id)
            .field("attempt", &self.attempt)
            .field("due_at_ms", &self.due_at_ms)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_round_trips_and_carries_its_version() {
        let job = SendJob::new(Uuid::new_v4(), "123456".into(), Some("req-1".into()));
        let json: serde_json::Value = serde_json::from_slice(&job.to_bytes()).unwrap();
        assert_eq!(json["v"], 1);
        assert_eq!(SendJob::from_bytes(&job.to_bytes()).unwrap(), job);
    }

    #[test]
    fn garbage_and_unknown_versions_are_refused() {
        assert!(matches!(SendJob::from_bytes(b"{not json"), Err(JobError::Malformed(_))));
        let v2 = br#"{"v":2,"verification_id":"3f0c9a4e-0000-4000-8000-000000000000","code":"1"}"#;
        assert!(matches!(SendJob::from_bytes(v2), Err(JobError::Version(2))));
    }

    #[test]
    fn a_deferred_job_knows_how_long_it_still_waits() {
        let mut job = SendJob::new(Uuid::new_v4(), "123456".into(), None);
        let now = SystemTime::now();
        assert_eq!(job.wait_left(now), None, "a job never deferred is due");
        job.due_after(now, Duration::from_millis(8_500));
        let back: SendJob = SendJob::from_bytes(&job.to_bytes()).unwrap();
        let left = back.wait_left(now + Duration::from_secs(3)).unwrap();
        assert!((5_499..=5_500).contains(&left.as_millis()), "{left:?}");
        assert_eq!(back.wait_left(now + Duration::from_secs(9)), None);
    }

    #[test]
    fn a_job_written_before_due_times_existed_is_read_as_due() {
        let old = br#"{"v":1,"verification_id":"3f0c9a4e-0000-4000-8000-000000000000","code":"1","attempt":2}"#;
        let job = SendJob::from_bytes(old).unwrap();
        assert_eq!((job.attempt, job.wait_left(SystemTime::now())), (2, None));
    }

    #[test]
    fn debug_output_hides_the_code() {
        let job = SendJob::new(Uuid::new_v4(), "987654".into(), None);
        assert!(!format!("{job:?}").contains("987654"));
    }
}
