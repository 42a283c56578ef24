package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/smsctl/smsctl/platform"
	"github.com/smsctl/smsctl/sms"
	"github.com/smsctl/smsctl/sms/webhook"
)

// Webhooks keeps webhook endpoints, their delivery queue and the log of
// attempts in schema sms. Deliveries of message events are queued by a
// trigger on sms.message_events (migration 00007), in the transaction that
// records the event.
type Webhooks struct {
	db    *sqlx.DB
	stmts *platform.Statements
}

// NewWebhooks returns the webhook store on db.
func NewWebhooks(db *sqlx.DB) *Webhooks { return &Webhooks{db: db, stmts: platform.NewStatements(db)} }

// PreviousSecretTTL is how long a rotated-out secret keeps signing.
const PreviousSecretTTL = 24 * time.Hour

const endpointColumns = `id, account_id, url, description, event_types, enabled, disabled_reason, created_at, updated_at`

type endpointRow struct {
	ID             uuid.UUID      `db:"id"`
	AccountID      int64          `db:"account_id"`
	URL            string         `db:"url"`
	Description    string         `db:"description"`
	EventTypes     pq.StringArray `db:"event_types"`
	Enabled        bool           `db:"enabled"`
	DisabledReason *string        `db:"disabled_reason"`
	CreatedAt      time.Time      `db:"created_at"`
	UpdatedAt      time.Time      `db:"updated_at"`
}

func (r endpointRow) endpoint() webhook.Endpoint {
	types := []string(r.EventTypes)
	if types == nil {
		types = []string{}
	}
	return webhook.Endpoint{ID: r.ID, AccountID: r.AccountID, URL: r.URL, Description: r.Description, EventTypes: types,
		Enabled: r.Enabled, DisabledReason: r.DisabledReason, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}
}

// CreateEndpoint stores a new endpoint of the account with a new secret,
// which the returned endpoint carries (it is shown once). in must be
// valid; an account has at most webhook.MaxEndpoints endpoints.
func (w *Webhooks) CreateEndpoint(ctx context.Context, accountID int64, in webhook.EndpointInput) (webhook.Endpoint, error) {
	secret, err := webhook.NewSecret()
	if err != nil {
		return webhook.Endpoint{}, err
	}
	types, desc, enabled := []string{}, "", true
	if in.EventTypes != nil {
		types = *in.EventTypes
	}
	if in.Description != nil {
		desc = *in.Description
	}
	if in.Enabled != nil {
		enabled = *in.Enabled
	}
	tx, err := w.db.BeginTxx(ctx, nil)
	if err != nil {
		return webhook.Endpoint{}, storeErr("begin", err)
	}
	defer func() { _ = tx.Rollback() }()
	// The count and the insert under one lock per account, so that
	// concurrent creations don't pass the limit together.
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('sms.webhook_endpoints', $1))`, accountID); err != nil {
		return webhook.Endpoint{}, storeErr("lock the account's endpoints", err)
	}
	var row endpointRow
	err = tx.GetContext(ctx, &row, `
        INSERT INTO sms.webhook_endpoints (id, account_id, url, description, event_types, secret, enabled, disabled_reason)
        SELECT $1, $2, $3, $4, $5, $6, $7, CASE WHEN $7 THEN NULL ELSE 'disabled by request' END
        WHERE (SELECT count(*) FROM sms.webhook_endpoints WHERE account_id = $2) < $8
        RETURNING `+endpointColumns,
		sms.NewID(), accountID, *in.URL, desc, pq.StringArray(types), secret, enabled, webhook.MaxEndpoints)
	if errors.Is(err, sql.ErrNoRows) {
		return webhook.Endpoint{}, &sms.Error{Code: sms.CodeUnprocessable, Kind: webhook.KindTooManyEndpoints,
			Message: fmt.Sprintf("an account may have at most %d webhook endpoints; delete one first", webhook.MaxEndpoints)}
	}
	if err != nil {
		return webhook.Endpoint{}, storeErr("create webhook endpoint", err)
	}
	if err := tx.Commit(); err != nil {
		return webhook.Endpoint{}, storeErr("commit", err)
	}
	ep := row.endpoint()
	ep.Secret = secret
	return ep, nil
}

// Endpoint returns the account's endpoint id, or sms.ErrNotFound (also
// for another account's).
func (w *Webhooks) Endpoint(ctx context.Context, accountID int64, id uuid.UUID) (webhook.Endpoint, error) {
	var row endpointRow
	err := w.db.GetContext(ctx, &row, `SELECT `+endpointColumns+` FROM sms.webhook_endpoints WHERE id = $1 AND account_id = $2`, id, accountID)
	if errors.Is(err, sql.ErrNoRows) {
		return webhook.Endpoint{}, sms.ErrNotFound
	}
	if err != nil {
		return webhook.Endpoint{}, storeErr("get webhook endpoint", err)
	}
	return row.endpoint(), nil
}

// Endpoints lists the account's endpoints, oldest first.
func (w *Webhooks) Endpoints(ctx context.Context, accountID int64) ([]webhook.Endpoint, error) {
	var rows []endpointRow
	err := w.db.SelectContext(ctx, &rows, `SELECT `+endpointColumns+` FROM sms.webhook_endpoints WHERE account_id = $1 ORDER BY created_at, id`, accountID)
	if err != nil {
		return nil, storeErr("list webhook endpoints", err)
	}
	out := make([]webhook.Endpoint, len(rows))
	for i, r := range rows {
		out[i] = r.endpoint()
	}
	return out, nil
}

// UpdateEndpoint changes the fields in's present. Enabling clears the
// reason the endpoint was disabled; its pending deliveries go out again.
func (w *Webhooks) UpdateEndpoint(ctx context.Context, accountID int64, id uuid.UUID, in webhook.EndpointInput) (webhook.Endpoint, error) {
	args := []any{id, accountID}
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	sets := []string{"updated_at = now()"}
	if in.URL != nil {
		sets = append(sets, "url = "+arg(*in.URL))
	}
	if in.Description != nil {
		sets = append(sets, "description = "+arg(*in.Description))
	}
	if in.EventTypes != nil {
		sets = append(sets, "event_types = "+arg(pq.StringArray(*in.EventTypes)))
	}
	if in.Enabled != nil {
		p := arg(*in.Enabled)
		sets = append(sets, "enabled = "+p,
			fmt.Sprintf("disabled_reason = CASE WHEN %s THEN NULL WHEN enabled THEN 'disabled by request' ELSE disabled_reason END", p))
	}
	var row endpointRow
	err := w.db.GetContext(ctx, &row, `UPDATE sms.webhook_endpoints SET `+strings.Join(sets, ", ")+`
        WHERE id = $1 AND account_id = $2 RETURNING `+endpointColumns, args...)
	if errors.Is(err, sql.ErrNoRows) {
		return webhook.Endpoint{}, sms.ErrNotFound
	}
	if err != nil {
		return webhook.Endpoint{}, storeErr("update webhook endpoint", err)
	}
	return row.endpoint(), nil
}

// DeleteEndpoint deletes the account's endpoint with its deliveries and
// their log.
func (w *Webhooks) DeleteEndpoint(ctx context.Context, accountID int64, id uuid.UUID) error {
	res, err := w.db.ExecContext(ctx, `DELETE FROM sms.webhook_endpoints WHERE id = $1 AND account_id = $2`, id, accountID)
	if err != nil {
		return storeErr("delete webhook endpoint", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return sms.ErrNotFound
	}
	return nil
}

// RotateSecret gives the endpoint a new secret, returned in the endpoint;
// the old one goes on signing too for PreviousSecretTTL, so the receiver
// can switch at its pace.
func (w *Webhooks) RotateSecret(ctx context.Context, accountID int64, id uuid.UUID) (webhook.Endpoint, error) {
	secret, err := webhook.NewSecret()
	if err != nil {
		return webhook.Endpoint{}, err
	}
	var row endpointRow
	err = w.db.GetContext(ctx, &row, `
        UPDATE sms.webhook_endpoints SET previous_secret = secret, previous_secret_until = now() + $4::interval,
            secret = $3, updated_at = now()
        WHERE id = $1 AND account_id = $2 RETURNING `+endpointColumns, id, accountID, secret, interval(PreviousSecretTTL))
	if errors.Is(err, sql.ErrNoRows) {
		return webhook.Endpoint{}, sms.ErrNotFound
	}
	if err != nil {
		return webhook.Endpoint{}, storeErr("rotate webhook secret", err)
	}
	ep := row.endpoint()
	ep.Secret = secret
	return ep, nil
}

// QueueTest queues a webhook.test event to the account's endpoint and
// returns its webhook id; a disabled endpoint is a conflict.
func (w *Webhooks) QueueTest(ctx context.Context, accountID int64, id uuid.UUID) (uuid.UUID, error) {
	ep, err := w.Endpoint(ctx, accountID, id)
	if err != nil {
		return uuid.UUID{}, err
	}
	if !ep.Enabled {
		return uuid.UUID{}, &sms.Error{Code: sms.CodeConflict, Kind: webhook.KindEndpointDisabled,
			Message: "the endpoint is disabled: enable it (PATCH enabled: true) before testing it"}
	}
	wid := sms.NewID()
	_, err = w.db.ExecContext(ctx, `
        INSERT INTO sms.webhook_deliveries (id, webhook_id, endpoint_id, account_id, event_type, payload, next_attempt_at)
        SELECT $1, $1, w.id, w.account_id, $4,
            jsonb_build_object('type', $4::text, 'timestamp', sms.webhook_time(now()),
                'data', jsonb_build_object('endpoint_id', w.id, 'description', w.description)), now()
        FROM sms.webhook_endpoints w WHERE w.id = $2 AND w.account_id = $3`, wid, id, accountID, webhook.TypeTest)
	if err != nil {
		return uuid.UUID{}, storeErr("queue test webhook", err)
	}
	return wid, nil
}

// Attempts returns a page of the log of the account's endpoint, newest
// first: one entry per attempt.
func (w *Webhooks) Attempts(ctx context.Context, accountID int64, id uuid.UUID, f webhook.AttemptFilter) (webhook.AttemptPage, error) {
	if _, err := w.Endpoint(ctx, accountID, id); err != nil {
		return webhook.AttemptPage{}, err
	}
	size := min(max(f.Size, 1), 100)
	args := []any{id, size + 1}
	where := ""
	if f.After != nil {
		args = append(args, f.After.AttemptedAt, f.After.DeliveryID, f.After.Attempt)
		where = " AND (a.attempted_at, a.delivery_id, a.attempt) < ($3, $4, $5)"
	}
	var rows []webhook.Attempt
	err := sqlx.SelectContext(ctx, w.db, &rows, `
        SELECT d.webhook_id, d.event_type, d.message_id, a.attempt, a.state, a.status_code, a.error, a.latency_ms,
            a.attempted_at, a.next_attempt_at, a.delivery_id
        FROM sms.webhook_attempts a JOIN sms.webhook_deliveries d ON d.id = a.delivery_id
        WHERE a.endpoint_id = $1`+where+`
        ORDER BY a.attempted_at DESC, a.delivery_id DESC, a.attempt DESC LIMIT $2`, args...)
	if err != nil {
		return webhook.AttemptPage{}, storeErr("list webhook attempts", err)
	}
	page := webhook.AttemptPage{Attempts: rows}
	if len(rows) > size {
		page.Attempts = rows[:size]
		c := webhook.CursorOf(page.Attempts[size-1])
		page.Next = &c
	}
	if page.Attempts == nil {
		page.Attempts = []webhook.Attempt{}
	}
	return page, nil
}

// replaySQL queues again, for endpoint $1 of account $2, everything since
// $3: (a) each of its deliveries queued since then and not pending, as a
// new delivery with the same webhook id and body, so a receiver that has
// it already recognizes it; (b) the message events since then that it
// never had a delivery of (it was disabled, not subscribed, or not yet
// created), built from the message as it is now.
const replaySQL = `
WITH ep AS (
    SELECT id, account_id, event_types FROM sms.webhook_endpoints WHERE id = $1 AND account_id = $2
), busy AS (
    SELECT webhook_id FROM sms.webhook_deliveries WHERE endpoint_id = $1 AND state = 'pending'
), past AS (
    SELECT DISTINCT ON (d.webhook_id) d.webhook_id, d.account_id, d.event_type, d.message_id, d.sequence, d.payload, d.created_at
    FROM sms.webhook_deliveries d
    WHERE d.endpoint_id = $1 AND d.created_at >= $3 AND d.webhook_id NOT IN (SELECT webhook_id FROM busy)
    ORDER BY d.webhook_id, d.created_at
), have AS (
    -- A delivery is queued after its event occurred; an hour covers the
    -- clocks of the processors that date receipts.
    SELECT message_id, sequence FROM sms.webhook_deliveries
    WHERE endpoint_id = $1 AND message_id IS NOT NULL AND created_at >= $3::timestamptz - interval '1 hour'
), missed AS (
    SELECT e.message_id, e.sequence, e.type, e.occurred_at,
        sms.webhook_message_body(m, e.type, e.status, e.sequence, e.occurred_at, e.detail) AS payload
    FROM ep
    JOIN sms.messages m ON m.account_id = ep.account_id AND m.updated_at >= $3
    JOIN sms.message_events e ON e.message_id = m.id AND e.occurred_at >= $3
    WHERE (ep.event_types = '{}' OR e.type = ANY (ep.event_types))
        AND NOT EXISTS (SELECT 1 FROM have h WHERE h.message_id = e.message_id AND h.sequence = e.sequence)
), ins AS (
    INSERT INTO sms.webhook_deliveries (id, webhook_id, endpoint_id, account_id, event_type, message_id, sequence, payload,
        next_attempt_at)
    SELECT gen_random_uuid(), webhook_id, $1, account_id, event_type, message_id, sequence, payload, now()
    FROM (SELECT webhook_id, account_id, event_type, message_id, sequence, payload, created_at FROM past) p
    UNION ALL
    SELECT q.id, q.id, $1, $2, q.type, q.message_id, q.sequence, q.payload, now()
    FROM (SELECT gen_random_uuid() AS id, missed.* FROM missed) q
    RETURNING 1
)
SELECT (SELECT count(*) FROM ins) AS queued, (SELECT count(*) FROM ep) AS found`

// Replay queues again everything the account's endpoint was sent, or
// should have been, since since (see replaySQL) and returns how many
// deliveries it queued.
func (w *Webhooks) Replay(ctx context.Context, accountID int64, id uuid.UUID, since time.Time) (int64, error) {
	var res struct {
		Queued int64 `db:"queued"`
		Found  int64 `db:"found"`
	}
	if err := w.db.GetContext(ctx, &res, replaySQL, id, accountID, since); err != nil {
		return 0, storeErr("replay webhooks", err)
	}
	if res.Found == 0 {
		return 0, sms.ErrNotFound
	}
	return res.Queued, nil
}

// claimSQL takes up to $1 due deliveries for a lease of $3: of each
// enabled endpoint (in random order, so none is always served last) as
// many as make $2 held by the dispatcher, which holds $5[i] of endpoint
// $4[i] already; never a message event while an earlier event of the
// message is pending at the same endpoint. Rows another replica is
// claiming are skipped.
const claimSQL = `
WITH cfg AS (` + asyncCommit + `
), ep AS (
    SELECT w.id, w.url, w.secret, CASE WHEN w.previous_secret_until > now() THEN w.previous_secret END AS previous,
        $2 - COALESCE((SELECT f.n FROM unnest($4::uuid[], $5::int[]) AS f(id, n) WHERE f.id = w.id), 0) AS room
    FROM sms.webhook_endpoints w WHERE w.enabled
    ORDER BY random()
), picked AS (
    SELECT c.id, ep.url, ep.secret, ep.previous
    FROM ep CROSS JOIN LATERAL (
        SELECT d.id FROM sms.webhook_deliveries d
        WHERE d.endpoint_id = ep.id AND d.state = 'pending' AND d.next_attempt_at <= now()
            -- The first pending event of its message at this endpoint.
            -- Asked as "the lowest sequence" so that only the index on
            -- (message, endpoint, sequence) answers it, statistics or not.
            AND (d.message_id IS NULL OR d.sequence <= (SELECT p.sequence FROM sms.webhook_deliveries p
                WHERE p.message_id = d.message_id AND p.endpoint_id = d.endpoint_id AND p.state = 'pending'
                ORDER BY p.sequence LIMIT 1))
        ORDER BY d.next_attempt_at
        LIMIT GREATEST(ep.room, 0)
        FOR UPDATE OF d SKIP LOCKED
    ) c
    WHERE ep.room > 0
    LIMIT $1
)
UPDATE sms.webhook_deliveries d SET attempts = d.attempts + 1, leased_until = now() + $3::interval,
    next_attempt_at = now() + $3::interval
FROM picked WHERE d.id = picked.id AND (SELECT v FROM cfg) = 'off'
RETURNING d.id, d.webhook_id, d.endpoint_id, picked.url, picked.secret, picked.previous, d.event_type, d.message_id,
    d.sequence, d.payload, d.attempts, d.created_at`

// asyncCommit makes the statement's commit not wait for the WAL flush
// (SET LOCAL in the statement's own transaction: one round trip). The
// dispatcher's bookkeeping can afford it: a crash of PostgreSQL loses at
// most the last fraction of a second of claims and results, and their
// deliveries are sent again (at least once holds), where waiting for a
// flush per claim and per batch of results bounds deliveries to a few
// hundred a second. The statement must use cfg's v for it to run.
const asyncCommit = `SELECT set_config('synchronous_commit', 'off', true) AS v`

// Claim takes due deliveries for the dispatcher; see webhook.Store.
func (w *Webhooks) Claim(ctx context.Context, r webhook.ClaimRequest) ([]webhook.Delivery, error) {
	ids, counts := make([]string, 0, len(r.Held)), make([]int64, 0, len(r.Held))
	for id, n := range r.Held {
		ids, counts = append(ids, id.String()), append(counts, int64(n))
	}
	claim, err := w.stmts.Get(ctx, claimSQL)
	if err != nil {
		return nil, storeErr("prepare the claim", err)
	}
	rows, err := claim.QueryxContext(ctx, r.Limit, r.PerEndpoint, interval(r.Lease), pq.Array(ids), pq.Array(counts))
	if err != nil {
		return nil, storeErr("claim webhook deliveries", err)
	}
	defer rows.Close()
	var out []webhook.Delivery
	for rows.Next() {
		var d webhook.Delivery
		var secret string
		var previous *string
		var seq sql.NullInt32
		if err := rows.Scan(&d.ID, &d.WebhookID, &d.EndpointID, &d.URL, &secret, &previous, &d.EventType, &d.MessageID,
			&seq, &d.Payload, &d.Attempt, &d.CreatedAt); err != nil {
			return nil, storeErr("read claimed webhook deliveries", err)
		}
		d.Secrets = []string{secret}
		if previous != nil {
			d.Secrets = append(d.Secrets, *previous)
		}
		if seq.Valid {
			n := int(seq.Int32)
			d.Sequence = &n
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, storeErr("read claimed webhook deliveries", err)
	}
	return out, nil
}

// recordSQL applies attempt results: the delivery succeeds, fails, waits
// for a retry (and the later events of its message with it), or, released
// by a stopping dispatcher, is due again at once with the attempt given
// back. A result whose delivery was claimed again since (its lease ended)
// changes nothing but is logged: the attempt happened. A 410 disables the
// endpoint.
const recordSQL = `
WITH cfg AS (` + asyncCommit + `
), r AS (
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::int[], $4::text[], $5::int[], $6::text[], $7::int[],
        $8::timestamptz[], $9::timestamptz[], $10::bool[], $11::text[])
        AS r(id, endpoint_id, attempt, outcome, status_code, error, latency_ms, attempted_at, next_at, gone, reason)
), upd AS (
    UPDATE sms.webhook_deliveries d SET
        state = CASE WHEN r.outcome IN ('succeeded', 'failed') THEN r.outcome ELSE 'pending' END,
        attempts = CASE WHEN r.outcome = 'released' THEN d.attempts - 1 ELSE d.attempts END,
        next_attempt_at = CASE r.outcome WHEN 'retrying' THEN r.next_at WHEN 'released' THEN now() END,
        leased_until = NULL
    FROM r WHERE d.id = r.id AND d.attempts = r.attempt AND d.state = 'pending'
    RETURNING d.id, d.endpoint_id, d.message_id, d.sequence, r.outcome, r.next_at
), pushed AS (
    UPDATE sms.webhook_deliveries f SET next_attempt_at = u.next_at
    FROM upd u
    WHERE u.outcome = 'retrying' AND u.message_id IS NOT NULL AND f.message_id = u.message_id
        AND f.endpoint_id = u.endpoint_id AND f.state = 'pending' AND f.sequence > u.sequence
        AND f.leased_until IS NULL AND f.next_attempt_at < u.next_at
), logged AS (
    INSERT INTO sms.webhook_attempts (delivery_id, attempt, endpoint_id, state, status_code, error, latency_ms,
        attempted_at, next_attempt_at)
    SELECT r.id, r.attempt, r.endpoint_id, r.outcome, NULLIF(r.status_code, 0), NULLIF(r.error, ''), r.latency_ms,
        r.attempted_at, CASE WHEN r.outcome = 'retrying' THEN r.next_at END
    FROM r JOIN sms.webhook_deliveries d ON d.id = r.id
    WHERE r.outcome <> 'released'
    ON CONFLICT DO NOTHING
), gone AS (
    UPDATE sms.webhook_endpoints w SET enabled = false, disabled_reason = g.reason, updated_at = now()
    FROM (SELECT DISTINCT ON (endpoint_id) endpoint_id, reason FROM r WHERE gone) g
    WHERE w.id = g.endpoint_id AND w.enabled
)
SELECT (SELECT count(*) FROM upd) AS applied, (SELECT v FROM cfg) AS commit_mode`

// Record applies the results of attempts; see webhook.Store.
func (w *Webhooks) Record(ctx context.Context, results []webhook.Result) error {
	if len(results) == 0 {
		return nil
	}
	n := len(results)
	ids, endpoints, attempts, outcomes := make([]string, n), make([]string, n), make([]int64, n), make([]string, n)
	codes, errs, latencies := make([]int64, n), make([]string, n), make([]int64, n)
	at, next, gone, reasons := make([]string, n), make([]*string, n), make([]bool, n), make([]string, n)
	for i, r := range results {
		ids[i], endpoints[i], attempts[i], outcomes[i] = r.DeliveryID.String(), r.EndpointID.String(), int64(r.Attempt), string(r.Outcome)
		codes[i], errs[i], latencies[i] = int64(r.StatusCode), r.Error, r.Latency.Milliseconds()
		at[i], gone[i], reasons[i] = r.AttemptedAt.UTC().Format(time.RFC3339Nano), r.Gone, r.DisabledReason
		if !r.NextAttemptAt.IsZero() {
			s := r.NextAttemptAt.UTC().Format(time.RFC3339Nano)
			next[i] = &s
		}
	}
	record, err := w.stmts.Get(ctx, recordSQL)
	if err != nil {
		return storeErr("prepare the record", err)
	}
	if _, err := record.ExecContext(ctx, pq.Array(ids), pq.Array(endpoints), pq.Array(attempts), pq.Array(outcomes),
		pq.Array(codes), pq.Array(errs), pq.Array(latencies), pq.Array(at), pq.Array(next), pq.Array(gone), pq.Array(reasons)); err != nil {
		return storeErr("record webhook attempts", err)
	}
	return nil
}

// Expedite makes the endpoint's waiting retries due now, in the order they
// were queued; see webhook.Store.
func (w *Webhooks) Expedite(ctx context.Context, endpointID uuid.UUID) error {
	_, err := w.db.ExecContext(ctx, `
        UPDATE sms.webhook_deliveries SET next_attempt_at = created_at
        WHERE endpoint_id = $1 AND state = 'pending' AND leased_until IS NULL AND next_attempt_at > now()`, endpointID)
	if err != nil {
		return storeErr("expedite webhook retries", err)
	}
	return nil
}

// QueueStats counts the pending deliveries and dates the oldest.
func (w *Webhooks) QueueStats(ctx context.Context) (webhook.QueueStats, error) {
	var st webhook.QueueStats
	var oldest sql.NullTime
	err := w.db.QueryRowxContext(ctx, `SELECT count(*), min(created_at) FROM sms.webhook_deliveries WHERE state = 'pending'`).
		Scan(&st.Pending, &oldest)
	if err != nil {
		return webhook.QueueStats{}, storeErr("webhook queue stats", err)
	}
	st.Oldest = oldest.Time
	return st, nil
}

// interval is d as a PostgreSQL interval parameter.
func interval(d time.Duration) string { return fmt.Sprintf("%d milliseconds", d.Milliseconds()) }
