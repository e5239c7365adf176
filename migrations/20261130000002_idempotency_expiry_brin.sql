-- Keys expire in the order they were taken (24 h after), so their expiry follows the table's
-- physical order: a BRIN index finds the expired ones for the retention sweep at a fraction
-- of a B-tree's cost on every insert (no entry per row, only a summary per range of pages).
DROP INDEX idempotency_keys_expiry;
CREATE INDEX idempotency_keys_expiry ON idempotency_keys USING brin (expires_at) WITH (autosummarize = on);
