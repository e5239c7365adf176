//! What a call came to, written down: an ambiguous call settled by a lookup, the attempt's
//! row finished (and the submitted mark on a 201), its metric and its log line.

use common::metric_names as names;
use common::phone::mask;
use common::repo::{self, AttemptOutcome, AttemptResult};

use super::{ClaimedSend, SendContext};
use crate::classify::{CallOutcome, Decision, classify};
use crate::twilio::CallResult;

impl SendContext {
    /// What the call came to: an ambiguous one is looked up at Twilio at once (its create is
    /// not idempotent); found, it is a success; not found, it is safe to call again.
    pub(super) async fn settle(
        &self,
        send: &ClaimedSend<'_>,
        result: &CallResult,
    ) -> (Decision, Option<String>, AttemptOutcome) {
        let decision = classify(result.outcome);
        if decision != Decision::Ambiguous {
            return (decision, result.sid.clone(), decision.outcome());
        }
        match self.find_sent(send).await {
            Ok(Some(found)) => (Decision::Success, Some(found), AttemptOutcome::Submitted),
            Ok(None) => (decision, result.sid.clone(), AttemptOutcome::NotAtTwilio),
            Err(_) => (decision, result.sid.clone(), AttemptOutcome::Ambiguous),
        }
    }

    /// Writes the call's end (and the submitted mark on success), then its metric and log line.
    pub(super) async fn record_call(
        &self,
        send: &ClaimedSend<'_>,
        row: i64,
        result: &CallResult,
        decision: Decision,
        sid: Option<&str>,
        outcome: AttemptOutcome,
    ) -> anyhow::Result<()> {
        let id = send.id();
        match sid {
            // The common case: the call's end and the submitted mark in one statement.
            Some(sid) if decision == Decision::Success && result.outcome == CallOutcome::Created => {
                let sent = repo::Submitted {
                    id,
                    message_sid: sid.to_owned(),
                    attempt_id: Some(row),
                };
                self.finisher.submitted(sent).await?;
            }
            Some(sid) if decision == Decision::Success => {
                self.finish(row, outcome, result, Some(sid)).await?;
                repo::mark_submitted(&self.pool, id, sid).await?;
            }
            _ => self.finish(row, outcome, result, sid).await?,
        }
        let code = twilio_code(result).map_or_else(|| "none".to_owned(), |c| c.to_string());
        let label = outcome.as_str();
        let channel = send.channel.as_str();
        metrics::counter!(names::SEND_ATTEMPTS, "outcome" => label, "twilio_code" => code, "channel" => channel)
            .increment(1);
        tracing::info!(attempt = send.recorded, outcome = label, channel, to = %mask(&send.phone), "twilio call");
        Ok(())
    }

    pub(super) async fn finish(
        &self,
        row: i64,
        outcome: AttemptOutcome,
        result: &CallResult,
        sid: Option<&str>,
    ) -> sqlx::Result<()> {
        let http_status = match result.outcome {
            CallOutcome::Answered { http_status, .. } => Some(i32::from(http_status)),
            CallOutcome::Created => Some(201),
            CallOutcome::NoAnswer { .. } | CallOutcome::NotConfigured => None,
        };
        let r = AttemptResult {
            outcome,
            http_status,
            twilio_error_code: twilio_code(result),
            error_message: result.error_message.as_deref(),
            provider_message_sid: sid,
        };
        repo::finish_attempt(&self.pool, row, &r).await
    }
}

pub(super) fn twilio_code(result: &CallResult) -> Option<i32> {
    match result.outcome {
        CallOutcome::Answered { twilio_code, .. } => twilio_code,
        _ => None,
    }
}
