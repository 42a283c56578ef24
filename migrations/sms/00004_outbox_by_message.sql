-- +goose Up
-- The relay gets what the writer just committed in memory and deletes the
-- published entries by message id, so the message id is the outbox's key.
DELETE FROM sms.outbox a USING sms.outbox b WHERE a.message_id = b.message_id AND a.id > b.id;
ALTER TABLE sms.outbox DROP CONSTRAINT outbox_pkey;
ALTER TABLE sms.outbox DROP COLUMN id;
ALTER TABLE sms.outbox ADD PRIMARY KEY (message_id);
-- Every insert paid for this index and every report moved a row out of it;
-- the re-queue finds stuck messages through messages_account_status_created.
DROP INDEX sms.messages_pending_updated;

-- +goose Down
CREATE INDEX messages_pending_updated ON sms.messages (updated_at) WHERE status = 'PENDING';
ALTER TABLE sms.outbox DROP CONSTRAINT outbox_pkey;
ALTER TABLE sms.outbox ADD COLUMN id bigserial PRIMARY KEY;
