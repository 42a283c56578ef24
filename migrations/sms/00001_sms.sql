-- +goose Up
CREATE SCHEMA IF NOT EXISTS sms;

CREATE TABLE sms.accounts (
    id         bigserial PRIMARY KEY,
    name       text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Keys are stored as SHA-256 hashes; prefix is the visible part used to find
-- the row and tell keys apart.
CREATE TABLE sms.api_keys (
    id         bigserial PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES sms.accounts (id),
    prefix     text NOT NULL UNIQUE,
    hash       bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

CREATE TABLE sms.messages (
    id             uuid PRIMARY KEY,
    account_id     bigint NOT NULL,
    sender         text NOT NULL,
    recipient      text NOT NULL,
    text           text NOT NULL,
    status         text NOT NULL CHECK (status IN ('PENDING', 'SENT', 'FAILED')),
    failure_reason text,
    encoding       text NOT NULL,
    segments       integer NOT NULL,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL
);

-- Lists are newest first per account; (created_at, id) is also the keyset cursor.
CREATE INDEX messages_account_created ON sms.messages (account_id, created_at DESC, id DESC);
CREATE INDEX messages_account_status_created ON sms.messages (account_id, status, created_at DESC, id DESC);
CREATE INDEX messages_account_sender_created ON sms.messages (account_id, sender, created_at DESC, id DESC);
CREATE INDEX messages_account_recipient_created ON sms.messages (account_id, recipient, created_at DESC, id DESC);
-- Finds messages stuck in PENDING without touching the final ones; a
-- re-queue bumps updated_at so the same message waits another period.
CREATE INDEX messages_pending_updated ON sms.messages (updated_at) WHERE status = 'PENDING';

-- Transactional outbox: written in the same transaction as the message,
-- deleted once the relay's produce was acknowledged by Kafka.
CREATE TABLE sms.outbox (
    id          bigserial PRIMARY KEY,
    message_id  uuid NOT NULL,
    traceparent text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Counts per account kept in step with the messages, so that stats and
-- list totals never count millions of rows.
CREATE TABLE sms.account_counters (
    account_id bigint PRIMARY KEY,
    pending    bigint NOT NULL DEFAULT 0,
    sent       bigint NOT NULL DEFAULT 0,
    failed     bigint NOT NULL DEFAULT 0
);

CREATE TABLE sms.idempotency_keys (
    account_id   bigint NOT NULL,
    key          text NOT NULL,
    request_hash bytea NOT NULL,
    message_id   uuid NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, key)
);
CREATE INDEX idempotency_keys_created ON sms.idempotency_keys (created_at);

-- +goose Down
DROP SCHEMA sms CASCADE;
