//! Beginning a call: its `in_flight` row, begun with the claim (its lease renewed first after
//! a long wait for a slot) or now; and closing a begun call that was never made.

use std::time::Duration;

use common::repo::{self, AttemptOutcome};

use super::{ClaimedSend, SendContext};

/// A call begun with its claim that waited this long for a slot renews its lease first. The
/// lease has `LEASE_MARGIN` (5 s) beyond the longest call and in-process wait, so a wait
/// shorter than this still leaves the call its whole time.
const RENEW_AFTER: Duration = Duration::from_secs(2);

impl SendContext {
    /// The call's `in_flight` row: begun with the claim, or now (renewing the lease). `None`
    /// when the lease is no longer this job's.
    pub(super) async fn begin_call(&self, send: &mut ClaimedSend<'_>) -> anyhow::Result<Option<i64>> {
        if let Some(row) = send.begun {
            // A long wait for a slot has eaten into the lease's margin: renewed first.
            if send.claimed.elapsed() >= RENEW_AFTER
                && !repo::renew_lease(&self.pool, send.id(), self.lease(send.holder)).await?
            {
                self.uncalled(send, "not called: the lease ran out while the call waited for a slot")
                    .await?;
                return Ok(None);
            }
            send.begun = None;
            return Ok(Some(row));
        }
        send.recorded += 1;
        let lease = self.lease(send.holder);
        Ok(repo::begin_attempt(&self.pool, send.id(), send.recorded, lease, &self.config.worker_id).await?)
    }

    /// Closes the call begun with the claim, if it was never made: known not to be at
    /// Twilio, so nobody needs to look it up.
    pub(super) async fn uncalled(&self, send: &mut ClaimedSend<'_>, why: &str) -> sqlx::Result<()> {
        let Some(row) = send.begun.take() else {
            return Ok(());
        };
        let r = repo::AttemptResult {
            outcome: AttemptOutcome::NotAtTwilio,
            http_status: None,
            twilio_error_code: None,
            error_message: Some(why),
            provider_message_sid: None,
        };
        repo::finish_attempt(&self.pool, row, &r).await
    }
}
