-- +goose Up
-- The outbox row carries the Kafka record itself (key and value), so the
-- relay reads only the outbox: no join with a table of millions of rows,
-- whose plan could turn into a scan while statistics lag behind growth.
ALTER TABLE sms.outbox ADD COLUMN record_key text;
ALTER TABLE sms.outbox ADD COLUMN payload text;
UPDATE sms.outbox o SET record_key = m.recipient, payload = json_build_object(
        'message_id', m.id, 'sender', m.sender, 'recipient', m.recipient, 'text', m.text,
        'encoding', m.encoding, 'segments', m.segments, 'created_at', m.created_at)::text
    FROM sms.messages m WHERE m.id = o.message_id;
DELETE FROM sms.outbox WHERE payload IS NULL; -- entries whose message is gone
ALTER TABLE sms.outbox ALTER COLUMN record_key SET NOT NULL;
ALTER TABLE sms.outbox ALTER COLUMN payload SET NOT NULL;

-- +goose Down
ALTER TABLE sms.outbox DROP COLUMN record_key;
ALTER TABLE sms.outbox DROP COLUMN payload;
