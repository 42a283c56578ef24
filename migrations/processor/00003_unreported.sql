-- +goose Up
-- Outcomes the API has not acknowledged yet move to a table of their own.
-- Marking one reported used to update its deliveries row: a new row
-- version and index entry in the largest table of the schema, the costliest
-- statement of the whole pipeline under load. Deleting a row from this
-- small table is cheaper, and deliveries becomes insert-only.
CREATE TABLE processor.unreported (
    message_id   uuid PRIMARY KEY,
    processed_at timestamptz NOT NULL
);
CREATE INDEX unreported_processed ON processor.unreported (processed_at);
INSERT INTO processor.unreported (message_id, processed_at)
    SELECT message_id, processed_at FROM processor.deliveries WHERE reported_at IS NULL;
DROP INDEX processor.deliveries_unreported;
ALTER TABLE processor.deliveries DROP COLUMN reported_at;

-- +goose Down
ALTER TABLE processor.deliveries ADD COLUMN reported_at timestamptz;
UPDATE processor.deliveries d SET reported_at = d.processed_at
    WHERE NOT EXISTS (SELECT 1 FROM processor.unreported u WHERE u.message_id = d.message_id);
CREATE INDEX deliveries_unreported ON processor.deliveries (processed_at) WHERE reported_at IS NULL;
DROP TABLE processor.unreported;
