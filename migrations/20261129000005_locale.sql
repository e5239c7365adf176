-- The language a verification's code is sent in (a BCP 47 tag of a supported locale, chosen
-- by the start or by the number's country). Rows from before are English, as they were sent.
ALTER TABLE verifications ADD COLUMN locale text NOT NULL DEFAULT 'en';
