-- +goose Up
-- One counter row per account was a hot row: every insert batch and every
-- report batch waited on its lock until commit. Writers now spread over
-- shards, and readers sum an account's shards.
ALTER TABLE sms.account_counters ADD COLUMN shard smallint NOT NULL DEFAULT 0;
ALTER TABLE sms.account_counters DROP CONSTRAINT account_counters_pkey;
ALTER TABLE sms.account_counters ADD PRIMARY KEY (account_id, shard);

-- +goose Down
-- Fold every account's shards into shard 0 before dropping the others, so
-- the counts survive.
UPDATE sms.account_counters z
SET pending = z.pending + o.pending, sent = z.sent + o.sent, failed = z.failed + o.failed
FROM (SELECT account_id, sum(pending) AS pending, sum(sent) AS sent, sum(failed) AS failed
      FROM sms.account_counters WHERE shard <> 0 GROUP BY account_id) o
WHERE z.account_id = o.account_id AND z.shard = 0;
INSERT INTO sms.account_counters (account_id, shard, pending, sent, failed)
SELECT account_id, 0, sum(pending), sum(sent), sum(failed)
FROM sms.account_counters c WHERE shard <> 0
  AND NOT EXISTS (SELECT 1 FROM sms.account_counters z WHERE z.account_id = c.account_id AND z.shard = 0)
GROUP BY account_id;
DELETE FROM sms.account_counters WHERE shard <> 0;
ALTER TABLE sms.account_counters DROP CONSTRAINT account_counters_pkey;
ALTER TABLE sms.account_counters ADD PRIMARY KEY (account_id);
ALTER TABLE sms.account_counters DROP COLUMN shard;
