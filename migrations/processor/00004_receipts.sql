-- +goose Up
-- Wave 2: one outcome per try of a message (a retry is a new try), the
-- carrier's ids of each message's parts, and the carrier's receipts.

ALTER TABLE processor.deliveries DROP CONSTRAINT deliveries_status_check;
-- SKIPPED: the API said not to send (canceled, opted out, expired); kept so
-- that a redelivered record is not claimed again.
ALTER TABLE processor.deliveries ADD CONSTRAINT deliveries_status_check
    CHECK (status IN ('SENT', 'FAILED', 'EXPIRED', 'SKIPPED'));
ALTER TABLE processor.deliveries
    ADD COLUMN retry integer NOT NULL DEFAULT 0,
    ADD COLUMN carrier_message_id text,
    -- The carrier calls behind the outcome, as reported to the API.
    ADD COLUMN attempt_log jsonb,
    -- Whether receipts are expected (the carrier said it sends them), and
    -- what they came to: DELIVERED, UNDELIVERED or EXPIRED, once known.
    ADD COLUMN receipts_expected boolean NOT NULL DEFAULT false,
    ADD COLUMN final_status text,
    ADD COLUMN final_at timestamptz;
ALTER TABLE processor.deliveries DROP CONSTRAINT deliveries_pkey;
ALTER TABLE processor.deliveries ADD PRIMARY KEY (message_id, retry);
-- The receipt timeout finds SENT messages still waiting for receipts.
CREATE INDEX deliveries_awaiting_receipts ON processor.deliveries (processed_at)
    WHERE receipts_expected AND final_status IS NULL;

-- Reports waiting for the API's acknowledgement: the outcome of a try, and
-- later what its receipts came to.
ALTER TABLE processor.unreported ADD COLUMN retry integer NOT NULL DEFAULT 0;
ALTER TABLE processor.unreported ADD COLUMN kind text NOT NULL DEFAULT 'outcome' CHECK (kind IN ('outcome', 'receipt'));
ALTER TABLE processor.unreported DROP CONSTRAINT unreported_pkey;
ALTER TABLE processor.unreported ADD PRIMARY KEY (message_id, retry, kind);

-- Each part the carrier accepted, under its id as the carrier wrote it
-- (normalized): receipts name parts by it.
CREATE TABLE processor.carrier_parts (
    carrier_id text PRIMARY KEY,
    message_id uuid NOT NULL,
    retry      integer NOT NULL,
    part       integer NOT NULL
);
CREATE INDEX carrier_parts_message ON processor.carrier_parts (message_id, retry);

-- One receipt per part: the first final one counts. A receipt can arrive
-- before the submit's answer recorded its part: it waits here unmatched
-- (message_id NULL) until the part is.
CREATE TABLE processor.receipts (
    carrier_id  text PRIMARY KEY,
    status      text NOT NULL CHECK (status IN ('DELIVERED', 'UNDELIVERED', 'EXPIRED')),
    state       text NOT NULL DEFAULT '',
    err         text NOT NULL DEFAULT '',
    done_at     timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    message_id  uuid,
    retry       integer
);
CREATE INDEX receipts_message ON processor.receipts (message_id, retry);
CREATE INDEX receipts_unmatched ON processor.receipts (received_at) WHERE message_id IS NULL;

-- +goose Down
DROP TABLE processor.receipts;
DROP TABLE processor.carrier_parts;
DELETE FROM processor.unreported WHERE kind = 'receipt' OR retry > 0;
ALTER TABLE processor.unreported DROP CONSTRAINT unreported_pkey;
ALTER TABLE processor.unreported DROP COLUMN kind, DROP COLUMN retry;
ALTER TABLE processor.unreported ADD PRIMARY KEY (message_id);
DELETE FROM processor.deliveries WHERE retry > 0;
DROP INDEX processor.deliveries_awaiting_receipts;
ALTER TABLE processor.deliveries DROP CONSTRAINT deliveries_pkey;
ALTER TABLE processor.deliveries ADD PRIMARY KEY (message_id);
UPDATE processor.deliveries SET status = 'FAILED', failure_reason = COALESCE(failure_reason, lower(status))
    WHERE status IN ('EXPIRED', 'SKIPPED');
ALTER TABLE processor.deliveries DROP COLUMN retry, DROP COLUMN carrier_message_id, DROP COLUMN attempt_log,
    DROP COLUMN receipts_expected, DROP COLUMN final_status, DROP COLUMN final_at;
ALTER TABLE processor.deliveries DROP CONSTRAINT deliveries_status_check;
ALTER TABLE processor.deliveries ADD CONSTRAINT deliveries_status_check CHECK (status IN ('SENT', 'FAILED'));
