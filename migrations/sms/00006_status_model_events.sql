-- +goose Up
-- The status model of wave 2 (shared/design.md, "Message statuses"), the
-- message fields that go with it, and every message's event history.

ALTER TABLE sms.messages DROP CONSTRAINT messages_status_check;
ALTER TABLE sms.messages ADD CONSTRAINT messages_status_check CHECK (status IN
    ('SCHEDULED', 'PENDING', 'SENT', 'DELIVERED', 'UNDELIVERED', 'FAILED', 'EXPIRED', 'CANCELED'));

-- Constant defaults and nullable columns: no table rewrite.
ALTER TABLE sms.messages
    ADD COLUMN priority text NOT NULL DEFAULT 'normal' CHECK (priority IN ('high', 'normal', 'low')),
    ADD COLUMN send_at timestamptz,
    ADD COLUMN validity_period integer,
    -- When the message stops being worth sending (from created_at or
    -- send_at, plus validity_period).
    ADD COLUMN valid_until timestamptz,
    -- When a processor claimed the message for the carrier: from then on a
    -- cancel is too late.
    ADD COLUMN dispatched_at timestamptz,
    ADD COLUMN carrier_message_id text,
    ADD COLUMN delivered_at timestamptz,
    -- Explicit and scheduled retries so far.
    ADD COLUMN retries integer NOT NULL DEFAULT 0,
    -- The sequence of the message's last event: the next event takes
    -- last_seq + 1, in the statement that changes the message.
    ADD COLUMN last_seq integer NOT NULL DEFAULT 1;

-- What is due, not a scan: a million scheduled messages cost nothing until
-- they are.
CREATE INDEX messages_scheduled_due ON sms.messages (send_at) WHERE status = 'SCHEDULED';

-- Counts for every status (existing rows: the old three).
ALTER TABLE sms.account_counters
    ADD COLUMN scheduled bigint NOT NULL DEFAULT 0,
    ADD COLUMN delivered bigint NOT NULL DEFAULT 0,
    ADD COLUMN undelivered bigint NOT NULL DEFAULT 0,
    ADD COLUMN expired bigint NOT NULL DEFAULT 0,
    ADD COLUMN canceled bigint NOT NULL DEFAULT 0;

-- One row per state change of a message, in the order of its life.
-- Deleted with the message (messages are kept; retention follows theirs).
CREATE TABLE sms.message_events (
    message_id  uuid NOT NULL,
    sequence    integer NOT NULL,
    type        text NOT NULL,
    status      text NOT NULL,
    occurred_at timestamptz NOT NULL,
    detail      jsonb,
    PRIMARY KEY (message_id, sequence)
);

-- Recipients who opted out of an account's messages (STOP, or added by the
-- account). The processor's claim of a message checks it, so a message
-- queued before the STOP is not sent either.
CREATE TABLE sms.suppressions (
    account_id bigint NOT NULL,
    phone      text NOT NULL,
    reason     text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, phone)
);

-- A batch request's Idempotency-Key keeps the whole answer it got.
ALTER TABLE sms.idempotency_keys ALTER COLUMN message_id DROP NOT NULL;
ALTER TABLE sms.idempotency_keys ADD COLUMN response bytea; -- as sent: jsonb would reorder it

-- The history of messages accepted before this migration: what is known.
INSERT INTO sms.message_events (message_id, sequence, type, status, occurred_at)
    SELECT id, 1, 'message.accepted', 'PENDING', created_at FROM sms.messages;
INSERT INTO sms.message_events (message_id, sequence, type, status, occurred_at, detail)
    SELECT id, 2, CASE status WHEN 'SENT' THEN 'message.sent' ELSE 'message.failed' END, status, updated_at,
           CASE WHEN failure_reason IS NULL THEN NULL ELSE jsonb_build_object('failure_reason', failure_reason) END
    FROM sms.messages WHERE status IN ('SENT', 'FAILED');
UPDATE sms.messages SET last_seq = 2 WHERE status IN ('SENT', 'FAILED');

-- +goose Down
DELETE FROM sms.idempotency_keys WHERE message_id IS NULL;
ALTER TABLE sms.idempotency_keys DROP COLUMN response;
ALTER TABLE sms.idempotency_keys ALTER COLUMN message_id SET NOT NULL;
DROP TABLE sms.suppressions;
DROP TABLE sms.message_events;
DROP INDEX sms.messages_scheduled_due;
-- Statuses the old model does not have fold into its three.
UPDATE sms.messages SET status = 'SENT' WHERE status = 'DELIVERED';
UPDATE sms.messages SET status = 'FAILED', failure_reason = COALESCE(failure_reason, lower(status))
    WHERE status IN ('UNDELIVERED', 'EXPIRED', 'CANCELED');
UPDATE sms.messages SET status = 'PENDING' WHERE status = 'SCHEDULED';
UPDATE sms.account_counters SET pending = pending + scheduled, sent = sent + delivered,
    failed = failed + undelivered + expired + canceled;
ALTER TABLE sms.account_counters DROP COLUMN scheduled, DROP COLUMN delivered, DROP COLUMN undelivered,
    DROP COLUMN expired, DROP COLUMN canceled;
ALTER TABLE sms.messages DROP COLUMN priority, DROP COLUMN send_at, DROP COLUMN validity_period,
    DROP COLUMN valid_until, DROP COLUMN dispatched_at, DROP COLUMN carrier_message_id,
    DROP COLUMN delivered_at, DROP COLUMN retries, DROP COLUMN last_seq;
ALTER TABLE sms.messages DROP CONSTRAINT messages_status_check;
ALTER TABLE sms.messages ADD CONSTRAINT messages_status_check CHECK (status IN ('PENDING', 'SENT', 'FAILED'));
