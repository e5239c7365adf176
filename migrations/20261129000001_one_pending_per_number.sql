-- At most one pending verification per number, enforced by PostgreSQL for any number of API
-- replicas. Each replica serialises the starts of a number among its own requests, but two
-- replicas could each insert a pending row for one number without seeing the other's.
--
-- A start supersedes the pending row of its number and inserts its own in one statement; if
-- another replica committed a pending row for the number after that statement's snapshot, the
-- insert fails on this index and the API runs the statement again, which then supersedes the
-- newcomer. The start that commits last is the pending one.

-- Rows left by replicas before this rule: the newest stays pending, the older ones are
-- superseded as a start would have done it.
UPDATE verifications v SET
    status = CASE WHEN v.expires_at <= now() THEN 'expired' ELSE 'canceled' END,
    delivery_status = CASE WHEN v.delivery_status <> 'queued' THEN v.delivery_status
                           WHEN v.expires_at <= now() THEN 'expired' ELSE 'canceled' END,
    updated_at = now()
WHERE v.status = 'pending'
  AND EXISTS (SELECT 1 FROM verifications n
              WHERE n.phone_number = v.phone_number AND n.status = 'pending' AND n.seq > v.seq);

DELETE FROM outbox o USING verifications v
WHERE v.id = o.verification_id AND v.status <> 'pending';

-- Also serves every lookup of "the pending verification of a number" (there is one at most),
-- so the older, non-unique index goes.
CREATE UNIQUE INDEX verifications_one_pending_per_number ON verifications (phone_number)
    WHERE status = 'pending';
DROP INDEX verifications_pending_by_number;
