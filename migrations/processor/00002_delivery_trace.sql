-- +goose Up
-- The trace of the delivery, so that the report continues it in the API.
ALTER TABLE processor.deliveries ADD COLUMN traceparent text NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE processor.deliveries DROP COLUMN traceparent;
