-- Fallback from one channel to the next.
--
-- The step in use lives on the verification row (`step`, `delivery_status`,
-- `provider_message_sid`, `delivery_error_code`); when the service moves on, the step that
-- ended is copied to `verification_steps` and the row starts the next one. One statement
-- does both, conditional on the step, so each step is taken once whatever the number of API
-- replicas, workers or callbacks racing it.

-- Set while a later step may still need the code: the code sealed as in the outbox (workers
-- open it; the database cannot). Cleared when the last step starts or the verification ends.
ALTER TABLE verifications ADD COLUMN sealed_code bytea;
-- When the service moves on to the next channel: FALLBACK_AFTER_SECONDS after the step was
-- handed to Twilio, at once when it failed for good, and the code's expiry before it was
-- handed over. NULL when there is no next channel (or no longer a reason to use it).
ALTER TABLE verifications ADD COLUMN fallback_due_at timestamptz;
-- FALLBACK_AFTER_SECONDS as the start saw it (NULL: one channel).
ALTER TABLE verifications ADD COLUMN fallback_after_seconds integer;
-- When the step in use started (NULL: the first step, at `created_at`).
ALTER TABLE verifications ADD COLUMN step_started_at timestamptz;
CREATE INDEX verifications_fallback_due ON verifications (fallback_due_at)
    WHERE fallback_due_at IS NOT NULL;

-- Which step a Twilio call was made for: an unknown call of an earlier channel says nothing
-- about the current one.
ALTER TABLE send_attempts ADD COLUMN step integer NOT NULL DEFAULT 0;

-- The steps that ended, as they ended; late callbacks still update them by sid.
CREATE TABLE verification_steps (
    verification_id uuid        NOT NULL REFERENCES verifications (id) ON DELETE CASCADE,
    step            integer     NOT NULL,
    channel         text        NOT NULL,
    delivery_status text        NOT NULL,
    provider_sid    text,
    error_code      integer,
    started_at      timestamptz NOT NULL,
    ended_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (verification_id, step)
);
CREATE INDEX verification_steps_by_sid ON verification_steps (provider_sid)
    WHERE provider_sid IS NOT NULL;
