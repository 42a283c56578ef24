-- +goose Up
-- Rate limits shared by every API replica: one token bucket per API key
-- (sms/http.SharedLimiter). Replicas take tokens in chunks, so a row is
-- updated once per chunk of requests, not per request. The state is
-- disposable: UNLOGGED (no WAL, emptied after a crash, not on standbys),
-- and a lost bucket starts full again. fillfactor leaves room for HOT
-- updates (no indexed column changes).
CREATE UNLOGGED TABLE sms.rate_limits (
    key          text PRIMARY KEY,
    tokens       double precision NOT NULL,
    refreshed_at timestamptz NOT NULL
) WITH (fillfactor = 50);

-- take_tokens refills key's bucket (rate tokens a second, at most burst)
-- by the time since its last refill, by this server's clock, then takes
-- up to want tokens if at least need are there, else none. It returns
-- what it took and what is left.
-- +goose StatementBegin
CREATE FUNCTION sms.take_tokens(p_key text, p_rate double precision, p_burst double precision,
                                p_want integer, p_need integer,
                                OUT granted integer, OUT available double precision)
LANGUAGE plpgsql AS $$
DECLARE
    cur_tokens double precision;
    cur_at     timestamptz;
    t          timestamptz;
BEGIN
    INSERT INTO sms.rate_limits (key, tokens, refreshed_at) VALUES (p_key, p_burst, clock_timestamp())
        ON CONFLICT (key) DO NOTHING;
    SELECT r.tokens, r.refreshed_at INTO cur_tokens, cur_at
        FROM sms.rate_limits r WHERE r.key = p_key FOR UPDATE;
    -- Read the clock once the row is ours: a refill that waited for the
    -- lock starts where the one before it ended.
    t := greatest(clock_timestamp(), cur_at);
    available := least(p_burst, cur_tokens + p_rate * extract(epoch FROM t - cur_at));
    IF available >= p_need THEN
        granted := least(floor(available)::integer, p_want);
    ELSE
        granted := 0;
    END IF;
    available := available - granted;
    UPDATE sms.rate_limits SET tokens = available, refreshed_at = t WHERE key = p_key;
END
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION sms.take_tokens(text, double precision, double precision, integer, integer);
DROP TABLE sms.rate_limits;
