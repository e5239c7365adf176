-- Idempotency-Key on POST /v1/verifications and /v1/verifications/check: the first answer to
-- a key, per API key, kept 24 hours, shared by every API replica.
CREATE TABLE idempotency_keys (
    -- Which API key sent it: a digest of the key (the key itself is never stored).
    scope         text        NOT NULL,
    idem_key      text        NOT NULL,
    -- SHA-256 of the method, the path and the body (JSON in a canonical form).
    fingerprint   bytea       NOT NULL,
    -- The request running it, and until when it holds the key (a request whose process
    -- died gives it up then). Both NULL once the answer is stored.
    holder        text,
    locked_until  timestamptz,
    -- The answer, once there is one.
    status        integer,
    body          bytea,
    -- A start that committed its verification before its answer was stored (the process died
    -- in between) left its id here, in the start's own statement: the answer is rebuilt from it.
    verification_id uuid,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    PRIMARY KEY (scope, idem_key)
);
-- The retention sweep deletes expired keys, oldest first.
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);
