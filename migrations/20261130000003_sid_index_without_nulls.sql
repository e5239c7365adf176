-- The message sid's uniqueness only matters once Twilio gave one: index the sids there are.
-- The constraint's index also held an entry for every verification not yet handed to Twilio
-- (NULL), written by every start and every claim of a send, and never looked up.
ALTER TABLE verifications DROP CONSTRAINT verifications_provider_message_sid_key;
CREATE UNIQUE INDEX verifications_provider_message_sid_key ON verifications (provider_message_sid)
    WHERE provider_message_sid IS NOT NULL;
