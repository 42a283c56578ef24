-- +goose Up
-- One counter row per account was a hot row: every insert batch and every
-- report batch waited on its lock until commit. Writers now spread over
-- shards, and readers sum an account's shards.
ALTER TABLE sms.account_counters ADD COLUMN shard smallint NOT NULL DEFAULT 0;
ALTER TABLE sms.account_counters DROP CONSTRAINT account_counters_pkey;
ALTER TABLE sms.account_counters ADD PRIMARY KEY (account_id, shard);

-- +goose Down
DELETE FROM sms.account_counters WHERE shard <> 0;
ALTER TABLE sms.account_counters DROP CONSTRAINT account_counters_pkey;
ALTER TABLE sms.account_counters ADD PRIMARY KEY (account_id);
ALTER TABLE sms.account_counters DROP COLUMN shard;
