-- One row per verification: a phone number, the HMAC of its code, and two statuses.
--
-- `status` is the verification's life (pending → approved | canceled | max_attempts_reached |
-- expired | failed); `delivery_status` is its SMS (queued → sending → submitted → sent →
-- delivered | undelivered | failed, or expired / canceled when never sent). The ordering rules
-- live in Rust (common::status); SQL applies them with conditional updates, so two writers can
-- never move a status backwards.
CREATE TABLE verifications (
    id                   uuid PRIMARY KEY,
    -- Orders starts for one number: the newest pending row is the only one a code can approve.
    seq                  bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    phone_number         text        NOT NULL,
    -- HMAC-SHA256(VERIFY_SECRET, id || code): the code itself is never stored.
    code_hmac            bytea       NOT NULL,
    status               text        NOT NULL DEFAULT 'pending' CHECK (status IN
                            ('pending', 'approved', 'canceled', 'max_attempts_reached', 'expired', 'failed')),
    delivery_status      text        NOT NULL DEFAULT 'queued' CHECK (delivery_status IN
                            ('queued', 'sending', 'submitted', 'sent', 'delivered', 'undelivered',
                             'failed', 'expired', 'canceled')),
    check_attempts       integer     NOT NULL DEFAULT 0,
    max_check_attempts   integer     NOT NULL CHECK (max_check_attempts > 0),
    send_attempts        integer     NOT NULL DEFAULT 0,
    provider_message_sid text UNIQUE,
    delivery_error_code  integer,
    request_id           text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    expires_at           timestamptz NOT NULL
);

-- The check and the start look up the newest pending verification of a number.
CREATE INDEX verifications_pending_by_number ON verifications (phone_number, seq DESC)
    WHERE status = 'pending';

-- Every call the worker made to Twilio, with its outcome: the audit trail of a send.
CREATE TABLE send_attempts (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    verification_id      uuid        NOT NULL REFERENCES verifications (id) ON DELETE CASCADE,
    attempt              integer     NOT NULL,
    started_at           timestamptz NOT NULL,
    finished_at          timestamptz NOT NULL DEFAULT now(),
    -- submitted | retry | ambiguous | permanent
    outcome              text        NOT NULL,
    http_status          integer,
    twilio_error_code    integer,
    error_message        text,
    provider_message_sid text
);
CREATE INDEX send_attempts_by_verification ON send_attempts (verification_id, attempt);

-- Every signed status callback, as received. Kept apart from `verifications` because Twilio
-- can call back before the worker has recorded the message sid: the worker replays these
-- when it stores the sid, so an early callback is not lost.
CREATE TABLE delivery_events (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_sid          text        NOT NULL,
    message_status       text        NOT NULL,
    error_code           integer,
    received_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX delivery_events_by_sid ON delivery_events (message_sid);
