//! The send job: the message `verify-api` publishes to `sms.send` and `verify-worker` consumes.
//!
//! The code travels in the job because only the API holds `VERIFY_SECRET` and the database
//! keeps only an HMAC of the code: the broker holds the plain code until the SMS is sent, so
//! access to the broker must be guarded like access to the SMS itself. The job carries no phone
//! number: the worker reads it from PostgreSQL, the single source of truth.

use std::fmt;

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
        }
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
    fn debug_output_hides_the_code() {
        let job = SendJob::new(Uuid::new_v4(), "987654".into(), None);
        assert!(!format!("{job:?}").contains("987654"));
    }
}
