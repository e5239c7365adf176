-- Event webhooks: every change an app cares about is written to `events` by the statement
-- that makes it (triggers, so in the same transaction, whichever process and statement made
-- it), and published to RabbitMQ by the API's event relay, which deletes the rows it
-- published; workers deliver them.
--
-- Events are written only by sessions that set `verify.events = on` (every process with
-- EVENTS_URL sets it on its connections): without a receiver nothing is written.

CREATE TABLE events (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Standard Webhooks' `webhook-id`: the same on every try of this event.
    webhook_id  text        NOT NULL,
    -- The JSON body, as POSTed.
    body        text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION verify_event(kind text, v verifications, channel text, delivery text, error_code integer)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO events (webhook_id, body)
    VALUES ('msg_' || replace(gen_random_uuid()::text, '-', ''),
            json_build_object(
                'type', kind,
                'timestamp', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                'data', json_build_object(
                    'id', v.id, 'phone_number', v.phone_number, 'status', v.status,
                    'channel', channel, 'delivery_status', delivery, 'error_code', error_code))::text);
$$;

-- A verification's delivery changed (except `sending`: a worker took the job, which is the
-- service's own business), or it moved to the next channel (`queued` on that channel); then
-- the verification's own final status, if it got one.
CREATE FUNCTION verifications_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.delivery_status IS DISTINCT FROM OLD.delivery_status OR NEW.step <> OLD.step)
       AND NEW.delivery_status <> 'sending' THEN
        PERFORM verify_event('delivery.updated', NEW, coalesce(NEW.channels[NEW.step + 1], 'sms'),
                             NEW.delivery_status, NEW.delivery_error_code);
    END IF;
    IF NEW.status IS DISTINCT FROM OLD.status AND NEW.status <> 'pending' THEN
        PERFORM verify_event('verification.' || NEW.status, NEW, coalesce(NEW.channels[NEW.step + 1], 'sms'),
                             NEW.delivery_status, NEW.delivery_error_code);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER verifications_events AFTER UPDATE ON verifications FOR EACH ROW
    WHEN (current_setting('verify.events', true) = 'on'
          AND (OLD.status IS DISTINCT FROM NEW.status
               OR OLD.delivery_status IS DISTINCT FROM NEW.delivery_status
               OR OLD.step IS DISTINCT FROM NEW.step))
    EXECUTE FUNCTION verifications_events();

-- A late callback for a step that already ended (the verification moved on to another
-- channel): a delivery update of that step's channel.
CREATE FUNCTION verification_steps_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM verify_event('delivery.updated', v, NEW.channel, NEW.delivery_status, NEW.error_code)
    FROM verifications v WHERE v.id = NEW.verification_id;
    RETURN NULL;
END $$;

CREATE TRIGGER verification_steps_events AFTER UPDATE ON verification_steps FOR EACH ROW
    WHEN (current_setting('verify.events', true) = 'on'
          AND OLD.delivery_status IS DISTINCT FROM NEW.delivery_status)
    EXECUTE FUNCTION verification_steps_events();

-- Pending verifications by expiry: the API's expiry sweep marks them `expired` once their
-- code runs out (which raises `verification.expired` without anyone reading them).
CREATE INDEX verifications_pending_expiry ON verifications (expires_at) WHERE status = 'pending';
