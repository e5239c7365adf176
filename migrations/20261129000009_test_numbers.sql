-- A verification of one of TEST_NUMBERS: its code is the configured one, nothing is sent.
ALTER TABLE verifications ADD COLUMN test boolean NOT NULL DEFAULT false;
