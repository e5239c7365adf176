//! The send job: the message `verify-api` publishes to `sms.send` and `verify-worker` consumes.
//!
//! The code travels in the job because the database keeps only an HMAC of it; it travels
//! sealed ([`crate::seal`]), so the broker's management UI, its disk and its logs show no live
//! code. The job carries no phone number: the worker reads it from PostgreSQL, the single
//! source of truth.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::code::Code;
use crate::seal::Sealer;

/// The version this build writes. Version 1 (the code in clear) is still read, and sealed
/// on reading, so jobs queued by an older build are not lost in an upgrade.
pub const JOB_VERSION: u32 = 2;

#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct SendJob {
    /// Message format version ([`JOB_VERSION`]).
    pub v: u32,
    pub verification_id: Uuid,
    /// The code sealed for this verification ([`Sealer::seal_text`]).
    pub sealed_code: String,
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

/// What is read off the queue: either version.
#[derive(Deserialize)]
struct Wire {
    v: u32,
    verification_id: Uuid,
    #[serde(default)]
    sealed_code: Option<String>,
    /// Version 1 only: the code in clear.
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    request_id: Option<String>,
    #[serde(default)]
    attempt: u32,
    #[serde(default)]
    due_at_ms: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("not a send job: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("unsupported job version {0}")]
    Version(u32),
    #[error("send job of version {0} without its code")]
    NoCode(u32),
}

impl SendJob {
    pub fn new(verification_id: Uuid, sealed_code: String, request_id: Option<String>) -> Self {
        Self {
            v: JOB_VERSION,
            verification_id,
            sealed_code,
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

    /// Reads a job of this version, or of version 1, whose clear code is sealed with
    /// `sealer` now (and the job written back as this version if it is published again).
    pub fn from_bytes(bytes: &[u8], sealer: &Sealer) -> Result<Self, JobError> {
        let wire: Wire = serde_json::from_slice(bytes)?;
        let sealed_code = match (wire.v, wire.sealed_code, wire.code) {
            (JOB_VERSION, Some(sealed), _) => sealed,
            (1, _, Some(clear)) => {
                let code = Code::parse_any_length(&clear).ok_or(JobError::NoCode(1))?;
                sealer.seal_text(wire.verification_id, &code)
            }
            (v @ (1 | JOB_VERSION), _, _) => return Err(JobError::NoCode(v)),
            (v, _, _) => return Err(JobError::Version(v)),
        };
        Ok(Self {
            v: JOB_VERSION,
            verification_id: wire.verification_id,
            sealed_code,
            request_id: wire.request_id,
            attempt: wire.attempt,
            due_at_ms: wire.due_at_ms,
        })
    }

    /// The verification a job is for, without opening or upgrading it (for reports).
    pub fn peek_verification_id(bytes: &[u8]) -> Option<Uuid> {
        serde_json::from_slice::<Wire>(bytes).ok().map(|w| w.verification_id)
    }
}

impl fmt::Debug for SendJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendJob")
            .field("v", &self.v)
            .field("verification_id", &self.verification_id)
            .field("sealed_code", &"[sealed]")
            .field("request_id", &self.request_id)
            .field("attempt", &self.attempt)
            .field("due_at_ms", &self.due_at_ms)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::code::CodeLength;

    fn sealer() -> Sealer {
        Sealer::from_list("a sealing key of at least 32 bytes long").unwrap()
    }

    fn job(request_id: Option<&str>) -> SendJob {
        let id = Uuid::new_v4();
        let code = Code::parse("123456", CodeLength::default()).unwrap();
        SendJob::new(id, sealer().seal_text(id, &code), request_id.map(str::to_owned))
    }

    #[test]
    fn a_job_round_trips_carries_its_version_and_no_clear_code() {
        let job = job(Some("req-1"));
        let json: serde_json::Value = serde_json::from_slice(&job.to_bytes()).unwrap();
        assert_eq!(json["v"], 2);
        assert!(json.get("code").is_none());
        assert!(!String::from_utf8(job.to_bytes()).unwrap().contains("123456"));
        let back = SendJob::from_bytes(&job.to_bytes(), &sealer()).unwrap();
        assert_eq!(back, job);
        let code = sealer().open_text(back.verification_id, &back.sealed_code).unwrap();
        assert_eq!(code.expose(), "123456");
    }

    #[test]
    fn a_version_1_job_is_sealed_on_reading() {
        let old = br#"{"v":1,"verification_id":"3f0c9a4e-0000-4000-8000-000000000000","code":"042042","attempt":2}"#;
        let job = SendJob::from_bytes(old, &sealer()).unwrap();
        assert_eq!((job.v, job.attempt), (JOB_VERSION, 2));
        assert!(!String::from_utf8(job.to_bytes()).unwrap().contains("042042"));
        let code = sealer().open_text(job.verification_id, &job.sealed_code).unwrap();
        assert_eq!(code.expose(), "042042");
    }

    #[test]
    fn garbage_unknown_versions_and_jobs_without_a_code_are_refused() {
        let id = "3f0c9a4e-0000-4000-8000-000000000000";
        let read = |s: String| SendJob::from_bytes(s.as_bytes(), &sealer());
        assert!(matches!(read("{not json".into()), Err(JobError::Malformed(_))));
        let v3 = format!(r#"{{"v":3,"verification_id":"{id}","sealed_code":"x"}}"#);
        assert!(matches!(read(v3), Err(JobError::Version(3))));
        let bare = format!(r#"{{"v":2,"verification_id":"{id}"}}"#);
        assert!(matches!(read(bare), Err(JobError::NoCode(2))));
        let bad_v1 = format!(r#"{{"v":1,"verification_id":"{id}","code":"12ab"}}"#);
        assert!(matches!(read(bad_v1), Err(JobError::NoCode(1))));
        assert_eq!(
            SendJob::peek_verification_id(format!(r#"{{"v":9,"verification_id":"{id}"}}"#).as_bytes())
                .unwrap()
                .to_string(),
            id
        );
    }

    #[test]
    fn a_deferred_job_knows_how_long_it_still_waits() {
        let mut job = job(None);
        let now = SystemTime::now();
        assert_eq!(job.wait_left(now), None, "a job never deferred is due");
        job.due_after(now, Duration::from_millis(8_500));
        let back: SendJob = SendJob::from_bytes(&job.to_bytes(), &sealer()).unwrap();
        let left = back.wait_left(now + Duration::from_secs(3)).unwrap();
        assert!((5_499..=5_500).contains(&left.as_millis()), "{left:?}");
        assert_eq!(back.wait_left(now + Duration::from_secs(9)), None);
    }

    #[test]
    fn debug_output_hides_the_sealed_code() {
        let job = job(None);
        assert!(!format!("{job:?}").contains(&job.sealed_code));
    }
}
