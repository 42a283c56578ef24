-- +goose Up
-- Webhooks (issue 14): endpoints per account, one delivery per event per
-- endpoint queued in the transaction that records the event, and one row
-- per attempt. The dispatcher (sms/webhook) claims due deliveries with
-- FOR UPDATE SKIP LOCKED, so several API replicas share the queue.

CREATE TABLE sms.webhook_endpoints (
    id                    uuid PRIMARY KEY,
    account_id            bigint NOT NULL,
    url                   text NOT NULL,
    description           text NOT NULL DEFAULT '',
    -- '{}' means every event type.
    event_types           text[] NOT NULL DEFAULT '{}',
    -- whsec_ + base64 of the key. During a rotation the previous secret
    -- signs too, until previous_secret_until.
    secret                text NOT NULL,
    previous_secret       text,
    previous_secret_until timestamptz,
    enabled               boolean NOT NULL DEFAULT true,
    disabled_reason       text,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_account ON sms.webhook_endpoints (account_id, created_at, id);
-- The fan-out's lookup, and its "is there any endpoint at all" check.
CREATE INDEX webhook_endpoints_enabled ON sms.webhook_endpoints (account_id) WHERE enabled;

-- One row per event per endpoint. webhook_id is the webhook-id header: the
-- delivery's own id, or, for a replay, the id of the delivery it replays
-- (the receiver dedupes on it). payload is the exact body, fixed when
-- queued, so every retry sends the same bytes.
CREATE TABLE sms.webhook_deliveries (
    id              uuid PRIMARY KEY,
    webhook_id      uuid NOT NULL,
    endpoint_id     uuid NOT NULL REFERENCES sms.webhook_endpoints (id) ON DELETE CASCADE,
    account_id      bigint NOT NULL,
    event_type      text NOT NULL,
    -- The message and the event's sequence, for message events: an event
    -- is not sent while an earlier one of its message to the same endpoint
    -- is pending.
    message_id      uuid,
    sequence        integer,
    payload         jsonb NOT NULL,
    state           text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'succeeded', 'failed')),
    -- Attempts claimed so far (the one in flight included).
    attempts        integer NOT NULL DEFAULT 0,
    -- When it is due (pending only); while claimed, when the lease ends.
    next_attempt_at timestamptz,
    -- Set while a dispatcher holds the delivery: if that replica dies, the
    -- delivery is due again once the lease has passed.
    leased_until    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);
-- What is due, per endpoint (the claim takes a few of each endpoint's).
CREATE INDEX webhook_deliveries_due ON sms.webhook_deliveries (endpoint_id, next_attempt_at) WHERE state = 'pending';
-- Earlier events of the same message still pending for the endpoint.
CREATE INDEX webhook_deliveries_order ON sms.webhook_deliveries (message_id, endpoint_id, sequence)
    WHERE state = 'pending';
-- An endpoint's deliveries by time (replay).
CREATE INDEX webhook_deliveries_endpoint_created ON sms.webhook_deliveries (endpoint_id, created_at);

-- One row per attempt: the delivery log of GET .../deliveries.
CREATE TABLE sms.webhook_attempts (
    delivery_id     uuid NOT NULL REFERENCES sms.webhook_deliveries (id) ON DELETE CASCADE,
    attempt         integer NOT NULL,
    endpoint_id     uuid NOT NULL,
    -- succeeded, retrying (next_attempt_at says when) or failed.
    state           text NOT NULL CHECK (state IN ('succeeded', 'retrying', 'failed')),
    status_code     integer,
    error           text,
    latency_ms      integer NOT NULL,
    attempted_at    timestamptz NOT NULL,
    next_attempt_at timestamptz,
    PRIMARY KEY (delivery_id, attempt)
);
CREATE INDEX webhook_attempts_endpoint ON sms.webhook_attempts (endpoint_id, attempted_at DESC, delivery_id DESC, attempt DESC);

-- A time as the API writes it: RFC 3339 in UTC, whatever the session's
-- TimeZone.
-- +goose StatementBegin
CREATE FUNCTION sms.webhook_time(t timestamptz) RETURNS text LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;
-- +goose StatementEnd

-- webhook_message_body is the body of a message event's webhook:
-- {type, timestamp, data} where data is the message m as the API returns
-- it, with the event's status and sequence, and its detail as
-- event_detail when it has one.
-- +goose StatementBegin
CREATE FUNCTION sms.webhook_message_body(m sms.messages, p_type text, p_status text, p_sequence integer,
    p_occurred timestamptz, p_detail jsonb) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('type', p_type, 'timestamp', sms.webhook_time(p_occurred), 'data',
        jsonb_build_object(
            'id', m.id, 'sender', m.sender, 'recipient', m.recipient, 'text', m.text, 'status', p_status,
            'failure_reason', m.failure_reason, 'encoding', m.encoding, 'segments', m.segments,
            'priority', m.priority, 'send_at', sms.webhook_time(m.send_at), 'validity_period', m.validity_period,
            'carrier_message_id', m.carrier_message_id, 'delivered_at', sms.webhook_time(m.delivered_at),
            'retries', m.retries, 'created_at', sms.webhook_time(m.created_at),
            'updated_at', sms.webhook_time(m.updated_at), 'sequence', p_sequence)
        || CASE WHEN p_detail IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('event_detail', p_detail) END)
$$;
-- +goose StatementEnd

-- queue_webhook queues p_type for every enabled endpoint of p_account
-- subscribed to it, with body {type, timestamp, data}, in the caller's
-- transaction; it returns how many deliveries it queued. Event sources
-- other than message events (inbound messages) call it.
-- +goose StatementBegin
CREATE FUNCTION sms.queue_webhook(p_account bigint, p_type text, p_occurred timestamptz, p_data jsonb)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    -- A subquery with a volatile target list is not flattened: one id per
    -- row, used twice.
    INSERT INTO sms.webhook_deliveries (id, webhook_id, endpoint_id, account_id, event_type, payload, next_attempt_at)
    SELECT q.id, q.id, q.endpoint_id, p_account, p_type,
        jsonb_build_object('type', p_type, 'timestamp', sms.webhook_time(p_occurred), 'data', p_data), now()
    FROM (SELECT gen_random_uuid() AS id, w.id AS endpoint_id FROM sms.webhook_endpoints w
          WHERE w.account_id = p_account AND w.enabled AND (w.event_types = '{}' OR p_type = ANY (w.event_types))) q;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
-- +goose StatementEnd

-- webhook_fanout queues a delivery of every new message event for every
-- enabled endpoint of the message's account subscribed to its type, in the
-- transaction that records the event (no dual write). data is the message
-- as the API returns it, with the event's status, its sequence and its
-- detail (event_detail). The hot path inserts events for every accepted
-- message: with no enabled endpoint at all this costs one index probe.
-- An event is due at once, unless an earlier event of its message waits
-- for a retry at that endpoint: then not before that retry.
-- +goose StatementBegin
CREATE FUNCTION sms.webhook_fanout() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM sms.webhook_endpoints WHERE enabled) THEN
        RETURN NULL;
    END IF;
    INSERT INTO sms.webhook_deliveries (id, webhook_id, endpoint_id, account_id, event_type, message_id, sequence, payload,
        next_attempt_at)
    SELECT q.id, q.id, q.endpoint_id, q.account_id, q.type, q.message_id, q.sequence, q.payload, q.due
    FROM (
        SELECT gen_random_uuid() AS id, w.id AS endpoint_id, m.account_id, e.type, e.message_id, e.sequence,
            sms.webhook_message_body(m, e.type, e.status, e.sequence, e.occurred_at, e.detail) AS payload,
            GREATEST(now(), (SELECT p.next_attempt_at FROM sms.webhook_deliveries p
                WHERE p.message_id = e.message_id AND p.endpoint_id = w.id AND p.state = 'pending'
                    AND p.sequence < e.sequence AND p.leased_until IS NULL
                ORDER BY p.sequence DESC LIMIT 1)) AS due
        FROM new_events e
        JOIN sms.messages m ON m.id = e.message_id
        JOIN sms.webhook_endpoints w ON w.account_id = m.account_id AND w.enabled
            AND (w.event_types = '{}' OR e.type = ANY (w.event_types))
    ) q;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

CREATE TRIGGER message_events_webhooks AFTER INSERT ON sms.message_events
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION sms.webhook_fanout();

-- +goose Down
DROP TRIGGER message_events_webhooks ON sms.message_events;
DROP FUNCTION sms.webhook_fanout();
DROP FUNCTION sms.queue_webhook(bigint, text, timestamptz, jsonb);
DROP FUNCTION sms.webhook_message_body(sms.messages, text, text, integer, timestamptz, jsonb);
DROP TABLE sms.webhook_attempts;
DROP TABLE sms.webhook_deliveries;
DROP TABLE sms.webhook_endpoints;
DROP FUNCTION sms.webhook_time(timestamptz);
