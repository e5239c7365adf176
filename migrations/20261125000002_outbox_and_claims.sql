-- Delivery safety: a lease on the send, and a transactional outbox for send jobs.

-- While a worker calls Twilio for a verification it holds the send until this time; no other
-- worker may call Twilio for it before then. NULL: nobody holds it. A worker that dies
-- loses the lease when it runs out, and the redelivered job takes it over.
ALTER TABLE verifications ADD COLUMN claimed_until timestamptz;

-- The send job of every start whose publish is not yet confirmed by RabbitMQ, written in the
-- same statement as the verification. The API deletes the row once the broker confirmed the
-- job; a relay in every API process publishes rows left behind (the API died between the
-- insert and the confirm). The code is sealed: XOR with a keystream derived from
-- VERIFY_SECRET and the verification id, so the database never holds a readable code.
CREATE TABLE outbox (
    verification_id uuid        PRIMARY KEY REFERENCES verifications (id) ON DELETE CASCADE,
    sealed_code     bytea       NOT NULL,
    request_id      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- The relay takes a row only after this time (and pushes it forward while it works on it).
    relay_after     timestamptz NOT NULL
);
CREATE INDEX outbox_due ON outbox (relay_after);

-- A dead-lettered job leaves its delivery `failed` while the verification stays `pending`,
-- so that an operator can replay it; the reason is kept here.
ALTER TABLE verifications ADD COLUMN dead_letter_reason text;
