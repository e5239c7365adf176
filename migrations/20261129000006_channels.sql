-- The channels a verification's code goes out on, in order (sms, whatsapp, call), and the
-- index of the one in use (0-based). Rows from before were SMS.
ALTER TABLE verifications
    ADD COLUMN channels text[] NOT NULL DEFAULT '{sms}',
    ADD COLUMN step integer NOT NULL DEFAULT 0;
