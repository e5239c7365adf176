-- Who holds a send's lease: a token the worker draws for each job it runs. Renewing and
-- releasing the lease require it, so a worker whose lease ran out (and was taken over by
-- another) can neither extend nor drop the new holder's lease. The same token lets a worker
-- take its own send again after a database outage interrupted it.
ALTER TABLE verifications ADD COLUMN claimed_by text;
