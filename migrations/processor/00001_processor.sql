-- +goose Up
CREATE SCHEMA IF NOT EXISTS processor;

-- One row per message whose outcome is known. A redelivered message with a
-- row here is never sent to the carrier again.
CREATE TABLE processor.deliveries (
    message_id     uuid PRIMARY KEY,
    status         text NOT NULL CHECK (status IN ('SENT', 'FAILED')),
    failure_reason text,
    attempts       integer NOT NULL,
    processed_at   timestamptz NOT NULL,
    reported_at    timestamptz
);
-- Reports not yet acknowledged by the API.
CREATE INDEX deliveries_unreported ON processor.deliveries (processed_at) WHERE reported_at IS NULL;

-- The simulated carrier's own ledger of calls, kept only when enabled
-- (sim-ledger): it lets tests count calls repeated after a crash.
CREATE TABLE processor.carrier_calls (
    id         bigserial PRIMARY KEY,
    message_id uuid NOT NULL,
    attempt    integer NOT NULL,
    outcome    text NOT NULL,
    called_at  timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP SCHEMA processor CASCADE;
