-- What operators look at: where each waiting send is, and which worker made each call.

-- The delay queue a deferred send waits in (NULL when it is not waiting in one).
ALTER TABLE verifications ADD COLUMN waiting_in text;

-- The worker that made a Twilio call (host, process and a random part), to see how the
-- load spreads over workers.
ALTER TABLE send_attempts ADD COLUMN worker_id text;

-- Oldest waiting sends, per place, for /v1/ops/queues and the age gauge.
CREATE INDEX verifications_queued_since ON verifications (created_at)
    WHERE delivery_status = 'queued' AND status = 'pending';
CREATE INDEX verifications_waiting_since ON verifications (waiting_in, updated_at)
    WHERE waiting_in IS NOT NULL;
CREATE INDEX verifications_dead_since ON verifications (updated_at)
    WHERE dead_letter_reason IS NOT NULL;
