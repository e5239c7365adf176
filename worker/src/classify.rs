//! Which Twilio outcomes are retried: the classification of one create-message call.
//!
//! Creating a message is not idempotent: a 500 or a timeout after the request was written may
//! still have sent the SMS, so those are `Ambiguous` (look the message up before sending
//! again), while failures Twilio documents as "never processed" (connection refused, 429,
//! 503) are retried as they are. Client errors are permanent: retrying cannot fix them.

use common::repo::AttemptOutcome;

/// What one call to Twilio's create-message endpoint came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// HTTP 201.
    Created,
    /// Any other HTTP answer, with Twilio's error code when the body had one.
    Answered { http_status: u16, twilio_code: Option<i32> },
    /// No HTTP answer. `written`: the request may have reached Twilio (a timeout, a reset
    /// mid-response) as opposed to a connection that was never made.
    NoAnswer { written: bool },
    /// Not called: this worker has no sender for the send's channel.
    NotConfigured,
}

/// What to do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Success,
    /// Safe to send again after a delay.
    Retry,
    /// Maybe sent: ask Twilio before sending again.
    Ambiguous,
    /// Will never succeed: record and stop.
    Permanent,
}

impl Decision {
    /// How a call with this decision is recorded.
    pub fn outcome(self) -> AttemptOutcome {
        match self {
            Self::Success => AttemptOutcome::Submitted,
            Self::Retry => AttemptOutcome::Retry,
            Self::Ambiguous => AttemptOutcome::Ambiguous,
            Self::Permanent => AttemptOutcome::Permanent,
        }
    }
}

/// Twilio codes that mean "try later" whatever the HTTP status says.
const RETRYABLE_CODES: &[i32] = &[20429, 20503, 21611];

pub fn classify(outcome: CallOutcome) -> Decision {
    match outcome {
        CallOutcome::Created => Decision::Success,
        CallOutcome::NotConfigured => Decision::Permanent,
        CallOutcome::NoAnswer { written: false } => Decision::Retry,
        CallOutcome::NoAnswer { written: true } => Decision::Ambiguous,
        CallOutcome::Answered {
            twilio_code: Some(code),
            ..
        } if RETRYABLE_CODES.contains(&code) => Decision::Retry,
        CallOutcome::Answered {
            http_status: 429 | 503, ..
        } => Decision::Retry,
        CallOutcome::Answered {
            http_status: 400..=499, ..
        } => Decision::Permanent,
        // 500, 502, 504 and anything unexpected (a 200 instead of 201, a redirect): the
        // message may exist.
        CallOutcome::Answered { .. } => Decision::Ambiguous,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CallOutcome::*;

    fn answered(http_status: u16, code: i32) -> CallOutcome {
        Answered {
            http_status,
            twilio_code: Some(code),
        }
    }

    /// The table of ../shared/twilio/FACTS.md, row by row.
    #[test]
    fn twilio_outcomes_are_classified_as_documented() {
        let table = [
            (Created, Decision::Success),
            (answered(401, 20003), Decision::Permanent),
            (answered(429, 20429), Decision::Retry),
            (answered(500, 20500), Decision::Ambiguous),
            (answered(503, 20503), Decision::Retry),
            (answered(400, 21211), Decision::Permanent),
            (answered(400, 21408), Decision::Permanent),
            (answered(400, 21610), Decision::Permanent),
            (answered(400, 21612), Decision::Permanent),
            (answered(400, 21614), Decision::Permanent),
            (answered(400, 21606), Decision::Permanent),
            (answered(400, 21602), Decision::Permanent),
            (answered(400, 21617), Decision::Permanent),
            (answered(400, 21611), Decision::Retry),
            (NoAnswer { written: false }, Decision::Retry),
            (NoAnswer { written: true }, Decision::Ambiguous),
            (
                Answered {
                    http_status: 429,
                    twilio_code: None,
                },
                Decision::Retry,
            ),
            (
                Answered {
                    http_status: 503,
                    twilio_code: None,
                },
                Decision::Retry,
            ),
            (
                Answered {
                    http_status: 502,
                    twilio_code: None,
                },
                Decision::Ambiguous,
            ),
            (
                Answered {
                    http_status: 404,
                    twilio_code: Some(20404),
                },
                Decision::Permanent,
            ),
            (
                Answered {
                    http_status: 200,
                    twilio_code: None,
                },
                Decision::Ambiguous,
            ),
        ];
        for (outcome, expected) in table {
            assert_eq!(classify(outcome), expected, "{outcome:?}");
        }
    }
}
