-- +goose Up
-- Two-way messaging (issue 16): numbers that belong to accounts, the
-- messages handsets send to them, each account's keywords and replies, and
-- what lets an automatic keyword reply pass the suppression it confirms.

-- A number (E.164) belongs to one account; inbound messages to it are that
-- account's.
CREATE TABLE sms.numbers (
    number     text PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES sms.accounts (id),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX numbers_account ON sms.numbers (account_id, number);

-- Messages handsets sent. account_id NULL: to a number nobody owns
-- (unrouted), kept for operators and never shown to an account. keyword is
-- the keyword applied (stop, start, help), reply_message_id the automatic
-- reply it got (a row of sms.messages). carrier_message_id makes a
-- hand-over repeated by the processor change nothing.
CREATE TABLE sms.inbound_messages (
    id                 uuid PRIMARY KEY,
    account_id         bigint,
    sender             text NOT NULL,
    recipient          text NOT NULL,
    text               text NOT NULL,
    received_at        timestamptz NOT NULL,
    carrier_message_id text NOT NULL,
    keyword            text CHECK (keyword IN ('stop', 'start', 'help')),
    reply_message_id   uuid,
    created_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT inbound_messages_carrier_message_id_key UNIQUE (carrier_message_id)
);
-- Lists are newest first per account; (received_at, id) is the keyset
-- cursor, and from/to filters have an index each.
CREATE INDEX inbound_account_received ON sms.inbound_messages (account_id, received_at DESC, id DESC)
    WHERE account_id IS NOT NULL;
CREATE INDEX inbound_account_sender ON sms.inbound_messages (account_id, sender, received_at DESC, id DESC)
    WHERE account_id IS NOT NULL;
CREATE INDEX inbound_account_recipient ON sms.inbound_messages (account_id, recipient, received_at DESC, id DESC)
    WHERE account_id IS NOT NULL;
-- What operators look at: messages to numbers nobody owns, newest first.
CREATE INDEX inbound_unrouted ON sms.inbound_messages (received_at DESC, id DESC) WHERE account_id IS NULL;

-- An account's keywords and reply texts; NULL takes the default
-- (sms/keywords.go). Words are stored upper case.
CREATE TABLE sms.keyword_settings (
    account_id  bigint PRIMARY KEY REFERENCES sms.accounts (id),
    stop_words  text[],
    start_words text[],
    help_words  text[],
    stop_reply  text,
    start_reply text,
    help_reply  text,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- An automatic reply to STOP, START or HELP: the processor's claim sends it
-- even to a suppressed recipient (the STOP confirmation must pass the
-- suppression it confirms). A constant default: no table rewrite.
ALTER TABLE sms.messages ADD COLUMN keyword_reply boolean NOT NULL DEFAULT false;

-- GET /v1/suppressions pages newest first.
CREATE INDEX suppressions_account_created ON sms.suppressions (account_id, created_at DESC, phone DESC);

-- Every change to the suppressions is announced on channel
-- sms_suppressions, at commit, so that each API replica's cache of them
-- (postgres.Suppressions) forgets what changed. The payload is
-- "<account> <phone>" for one phone, "<account>" for a statement that
-- changed more than 64 of an account's phones, "*" for a truncate. It says
-- what changed, not how: PostgreSQL folds identical payloads of one
-- transaction into one, so a delete and an insert of the same phone can't
-- be told apart in order.
-- +goose StatementBegin
CREATE FUNCTION sms.suppressions_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify('sms_suppressions', '*');
    ELSIF TG_OP = 'INSERT' THEN
        PERFORM pg_notify('sms_suppressions', p) FROM (
            SELECT DISTINCT CASE WHEN count(*) OVER (PARTITION BY account_id) > 64 THEN account_id::text
                ELSE account_id || ' ' || phone END AS p FROM new_rows) q;
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('sms_suppressions', p) FROM (
            SELECT DISTINCT CASE WHEN count(*) OVER (PARTITION BY account_id) > 64 THEN account_id::text
                ELSE account_id || ' ' || phone END AS p FROM old_rows) q;
    ELSE
        PERFORM pg_notify('sms_suppressions', p) FROM (
            SELECT DISTINCT CASE WHEN count(*) OVER (PARTITION BY account_id) > 64 THEN account_id::text
                ELSE account_id || ' ' || phone END AS p
            FROM (SELECT account_id, phone FROM old_rows UNION ALL SELECT account_id, phone FROM new_rows) r) q;
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER suppressions_inserted AFTER INSERT ON sms.suppressions
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION sms.suppressions_changed();
CREATE TRIGGER suppressions_deleted AFTER DELETE ON sms.suppressions
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION sms.suppressions_changed();
CREATE TRIGGER suppressions_updated AFTER UPDATE ON sms.suppressions
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION sms.suppressions_changed();
CREATE TRIGGER suppressions_truncated AFTER TRUNCATE ON sms.suppressions
    FOR EACH STATEMENT EXECUTE FUNCTION sms.suppressions_changed();

-- +goose Down
DROP TRIGGER suppressions_truncated ON sms.suppressions;
DROP TRIGGER suppressions_updated ON sms.suppressions;
DROP TRIGGER suppressions_deleted ON sms.suppressions;
DROP TRIGGER suppressions_inserted ON sms.suppressions;
DROP FUNCTION sms.suppressions_changed();
DROP INDEX sms.suppressions_account_created;
ALTER TABLE sms.messages DROP COLUMN keyword_reply;
DROP TABLE sms.keyword_settings;
DROP TABLE sms.inbound_messages;
DROP TABLE sms.numbers;
