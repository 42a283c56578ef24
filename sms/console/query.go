package console

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/smsctl/smsctl/platform"
	"github.com/smsctl/smsctl/sms"
)

// reader runs the console's own read queries on schema sms: what the store
// has no method for (lists across accounts, an account's keys, charts,
// tables other engineers' migrations add). Writes go through the stores.
type reader struct {
	db *sqlx.DB
	// keyTTL is how long a key's state is trusted (keyCacheTTL).
	keyTTL time.Duration

	mu        sync.Mutex
	keyStates map[string]keyState // by prefix
	tables    map[string]tableInfo
}

type keyState struct {
	account int64
	active  bool
	until   time.Time
}

type tableInfo struct {
	exists  bool
	columns []string
	until   time.Time
}

// keyCacheTTL is how long a key's state is trusted: a revoked key's
// console sessions end within it (the API's own key cache has its own TTL).
const keyCacheTTL = 5 * time.Second

func newReader(db *sqlx.DB) *reader {
	return &reader{db: db, keyTTL: keyCacheTTL, keyStates: make(map[string]keyState), tables: make(map[string]tableInfo)}
}

// dbErr wraps err with what was being done, an outage as sms.ErrUnavailable.
func dbErr(op string, err error) error {
	if platform.IsUnavailable(err) || errors.Is(err, sql.ErrConnDone) {
		return sms.Unavailable(op, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// keyAccount returns the account of the key with prefix and whether the
// key is still valid.
func (r *reader) keyAccount(ctx context.Context, prefix string) (int64, bool, error) {
	now := time.Now()
	r.mu.Lock()
	st, ok := r.keyStates[prefix]
	r.mu.Unlock()
	if ok && now.Before(st.until) {
		return st.account, st.active, nil
	}
	var row struct {
		Account int64      `db:"account_id"`
		Revoked *time.Time `db:"revoked_at"`
	}
	err := r.db.GetContext(ctx, &row, `SELECT account_id, revoked_at FROM sms.api_keys WHERE prefix = $1`, prefix)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		st = keyState{}
	case err != nil:
		return 0, false, dbErr("look up api key", err)
	default:
		st = keyState{account: row.Account, active: row.Revoked == nil}
	}
	st.until = now.Add(r.keyTTL)
	r.mu.Lock()
	if len(r.keyStates) >= 10_000 {
		clear(r.keyStates)
	}
	r.keyStates[prefix] = st
	r.mu.Unlock()
	return st.account, st.active, nil
}

func (r *reader) forgetKey(prefix string) {
	r.mu.Lock()
	delete(r.keyStates, prefix)
	r.mu.Unlock()
}

// accountName returns the name of account id.
func (r *reader) accountName(ctx context.Context, id int64) (string, error) {
	var name string
	err := r.db.GetContext(ctx, &name, `SELECT name FROM sms.accounts WHERE id = $1`, id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", sms.ErrNotFound
	}
	if err != nil {
		return "", dbErr("account name", err)
	}
	return name, nil
}

// accountRow is one line of the operators' accounts list.
type accountRow struct {
	ID         int64     `db:"id"`
	Name       string    `db:"name"`
	CreatedAt  time.Time `db:"created_at"`
	Messages   int64     `db:"messages"`
	ActiveKeys int64     `db:"active_keys"`
}

func (r *reader) accounts(ctx context.Context, limit int) ([]accountRow, error) {
	var out []accountRow
	err := r.db.SelectContext(ctx, &out, `
        SELECT a.id, a.name, a.created_at,
            COALESCE((SELECT sum(scheduled + pending + sent + delivered + undelivered + failed + expired + canceled)
                FROM sms.account_counters c WHERE c.account_id = a.id), 0)::bigint AS messages,
            (SELECT count(*) FROM sms.api_keys k WHERE k.account_id = a.id AND k.revoked_at IS NULL) AS active_keys
        FROM sms.accounts a ORDER BY a.name LIMIT $1`, limit)
	if err != nil {
		return nil, dbErr("list accounts", err)
	}
	return out, nil
}

// countsAll sums the counters of every account, in the order of sms.Statuses.
func (r *reader) countsAll(ctx context.Context) (sms.Stats, error) {
	var c [8]int64
	err := r.db.QueryRowxContext(ctx, `
        SELECT COALESCE(sum(scheduled), 0), COALESCE(sum(pending), 0), COALESCE(sum(sent), 0), COALESCE(sum(delivered), 0),
               COALESCE(sum(undelivered), 0), COALESCE(sum(failed), 0), COALESCE(sum(expired), 0), COALESCE(sum(canceled), 0)
        FROM sms.account_counters`).Scan(&c[0], &c[1], &c[2], &c[3], &c[4], &c[5], &c[6], &c[7])
	if err != nil {
		return sms.Stats{}, dbErr("stats of every account", err)
	}
	by := make(map[sms.Status]int64, len(sms.Statuses))
	for i, st := range sms.Statuses {
		by[st] = c[i]
	}
	return sms.NewStats(by), nil
}

// messageRow is a message with its account's name (operators' lists).
type messageRow struct {
	sms.Message
	AccountName string `db:"account_name"`
}

const msgCols = `m.id, m.account_id, m.sender, m.recipient, m.text, m.status, m.failure_reason, m.encoding, m.segments,
    m.priority, m.send_at, m.validity_period, m.valid_until, m.carrier_message_id, m.delivered_at, m.retries,
    m.created_at, m.updated_at`

// listFilter selects a page of messages, newest first.
type listFilter struct {
	Statuses []sms.Status
	Phone    string
	// From and To bound created_at: From <= created_at < To.
	From, To *time.Time
	After    *sms.Cursor
	Size     int
}

// listMessages returns a page of the messages of account scope (0: every
// account) that f selects, and the cursor of the next page. Each arm is an
// ordered scan of one of the (account, [status|sender|recipient],
// created_at, id) indexes, limited to the page; across accounts, one such
// scan per account, merged.
func (r *reader) listMessages(ctx context.Context, scope int64, f listFilter) ([]messageRow, *sms.Cursor, error) {
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	var conds []string
	if f.After != nil {
		conds = append(conds, fmt.Sprintf("(m.created_at, m.id) < (%s::timestamptz, %s::uuid)", arg(f.After.CreatedAt), arg(f.After.ID)))
	}
	if f.To != nil {
		conds = append(conds, "m.created_at < "+arg(*f.To)+"::timestamptz")
	}
	if f.From != nil {
		conds = append(conds, "m.created_at >= "+arg(*f.From)+"::timestamptz")
	}
	limit := arg(f.Size + 1)
	account := "a.id"
	if scope != 0 {
		account = arg(scope) + "::bigint"
	}
	var arms []string
	union := " UNION ALL "
	switch {
	case f.Phone != "":
		p := arg(f.Phone) + "::text"
		arms = []string{"m.sender = " + p, "m.recipient = " + p}
		union = " UNION " // a message from the phone to itself is in both
		if len(f.Statuses) > 0 {
			names := make([]string, len(f.Statuses))
			for i, s := range f.Statuses {
				names[i] = string(s)
			}
			conds = append(conds, "m.status = ANY("+arg(pq.Array(names))+"::text[])")
		}
	case len(f.Statuses) > 0:
		for _, s := range f.Statuses {
			arms = append(arms, "m.status = "+arg(string(s))+"::text")
		}
	default:
		arms = []string{"true"}
	}
	extra := ""
	if len(conds) > 0 {
		extra = " AND " + strings.Join(conds, " AND ")
	}
	parts := make([]string, len(arms))
	for i, a := range arms {
		parts[i] = fmt.Sprintf("(SELECT %s FROM sms.messages m WHERE m.account_id = %s AND %s%s ORDER BY m.created_at DESC, m.id DESC LIMIT %s)",
			msgCols, account, a, extra, limit)
	}
	body := "(" + strings.Join(parts, union) + ")"
	var query string
	if scope != 0 {
		query = fmt.Sprintf("SELECT x.*, ''::text AS account_name FROM %s x ORDER BY x.created_at DESC, x.id DESC LIMIT %s", body, limit)
	} else {
		query = fmt.Sprintf("SELECT x.*, a.name AS account_name FROM sms.accounts a CROSS JOIN LATERAL %s x ORDER BY x.created_at DESC, x.id DESC LIMIT %s", body, limit)
	}
	var rows []messageRow
	if err := r.db.SelectContext(ctx, &rows, query, args...); err != nil {
		return nil, nil, dbErr("list messages", err)
	}
	var next *sms.Cursor
	if len(rows) > f.Size {
		rows = rows[:f.Size]
		last := rows[len(rows)-1]
		next = &sms.Cursor{CreatedAt: last.CreatedAt, ID: last.ID}
	}
	return rows, next, nil
}

// message returns the message id of account scope (0: any account), or
// sms.ErrNotFound.
func (r *reader) message(ctx context.Context, scope int64, id uuid.UUID) (messageRow, error) {
	var m messageRow
	err := r.db.GetContext(ctx, &m, `SELECT `+msgCols+`, a.name AS account_name
        FROM sms.messages m JOIN sms.accounts a ON a.id = m.account_id
        WHERE m.id = $1 AND ($2::bigint = 0 OR m.account_id = $2)`, id, scope)
	if errors.Is(err, sql.ErrNoRows) {
		return messageRow{}, sms.ErrNotFound
	}
	if err != nil {
		return messageRow{}, dbErr("get message", err)
	}
	return m, nil
}

// owners returns the account of each of ids that account scope (0: any)
// may see.
func (r *reader) owners(ctx context.Context, scope int64, ids []uuid.UUID) (map[uuid.UUID]int64, error) {
	strs := make([]string, len(ids))
	for i, id := range ids {
		strs[i] = id.String()
	}
	var rows []struct {
		ID      uuid.UUID `db:"id"`
		Account int64     `db:"account_id"`
	}
	err := r.db.SelectContext(ctx, &rows, `SELECT id, account_id FROM sms.messages WHERE id = ANY($1::uuid[]) AND ($2::bigint = 0 OR account_id = $2)`,
		pq.Array(strs), scope)
	if err != nil {
		return nil, dbErr("find messages", err)
	}
	out := make(map[uuid.UUID]int64, len(rows))
	for _, row := range rows {
		out[row.ID] = row.Account
	}
	return out, nil
}

// keyRow is an API key as the keys screen lists it.
type keyRow struct {
	sms.APIKey
	AccountID int64 `db:"account_id"`
}

func (r *reader) keys(ctx context.Context, scope int64, limit int) ([]keyRow, error) {
	var out []keyRow
	err := r.db.SelectContext(ctx, &out, `
        SELECT k.id, a.name AS account, k.account_id, k.prefix, k.created_at, k.revoked_at
        FROM sms.api_keys k JOIN sms.accounts a ON a.id = k.account_id
        WHERE ($1::bigint = 0 OR k.account_id = $1) ORDER BY k.id DESC LIMIT $2`, scope, limit)
	if err != nil {
		return nil, dbErr("list api keys", err)
	}
	return out, nil
}

// revokeKey revokes key id of account scope (0: any), returning its prefix
// and whether it was revoked already; sms.ErrNotFound for another
// account's key.
func (r *reader) revokeKey(ctx context.Context, scope, id int64) (string, bool, error) {
	var res struct {
		Prefix  string `db:"prefix"`
		Already bool   `db:"already"`
	}
	err := r.db.GetContext(ctx, &res, `
        WITH prev AS (
            SELECT id, revoked_at FROM sms.api_keys WHERE id = $1 AND ($2::bigint = 0 OR account_id = $2) FOR UPDATE
        )
        UPDATE sms.api_keys k SET revoked_at = COALESCE(prev.revoked_at, now()) FROM prev
        WHERE k.id = prev.id RETURNING k.prefix, prev.revoked_at IS NOT NULL AS already`, id, scope)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, sms.ErrNotFound
	}
	if err != nil {
		return "", false, dbErr("revoke api key", err)
	}
	r.forgetKey(res.Prefix)
	return res.Prefix, res.Already, nil
}

// suppressionRow is one opted-out recipient.
type suppressionRow struct {
	AccountID   int64     `db:"account_id"`
	AccountName string    `db:"account_name"`
	Phone       string    `db:"phone"`
	Reason      string    `db:"reason"`
	CreatedAt   time.Time `db:"created_at"`
}

func (r *reader) suppressions(ctx context.Context, scope int64, phone string, limit int) ([]suppressionRow, error) {
	var out []suppressionRow
	err := r.db.SelectContext(ctx, &out, `
        SELECT s.account_id, a.name AS account_name, s.phone, s.reason, s.created_at
        FROM sms.suppressions s JOIN sms.accounts a ON a.id = s.account_id
        WHERE ($1::bigint = 0 OR s.account_id = $1) AND ($2::text = '' OR s.phone = $2)
        ORDER BY s.created_at DESC, s.phone LIMIT $3`, scope, phone, limit)
	if err != nil {
		return nil, dbErr("list suppressions", err)
	}
	return out, nil
}

// table looks up a table of schema sms and its columns. Tables that
// migrations of other features add (webhooks, inbound messages, numbers)
// are read only once they exist; a missing one is looked for again after a
// minute.
func (r *reader) table(ctx context.Context, name string) (tableInfo, error) {
	now := time.Now()
	r.mu.Lock()
	t, ok := r.tables[name]
	r.mu.Unlock()
	if ok && (t.exists || now.Before(t.until)) {
		return t, nil
	}
	var cols []string
	err := r.db.SelectContext(ctx, &cols, `
        SELECT column_name FROM information_schema.columns
        WHERE table_schema = 'sms' AND table_name = $1 ORDER BY ordinal_position`, name)
	if err != nil {
		return tableInfo{}, dbErr("look up table "+name, err)
	}
	t = tableInfo{exists: len(cols) > 0, columns: cols, until: now.Add(time.Minute)}
	r.mu.Lock()
	r.tables[name] = t
	r.mu.Unlock()
	return t, nil
}

// genericTable is a read-only view of a table whose shape this package
// doesn't know in advance: its columns as the table has them.
type genericTable struct {
	Name    string
	Exists  bool
	Columns []string
	Rows    [][]string
	// Limited says more rows may exist than shown.
	Limited bool
}

// hiddenColumn says which columns never show: secrets and hashes.
func hiddenColumn(name string) bool {
	return strings.Contains(name, "secret") || strings.Contains(name, "hash") || strings.Contains(name, "password") ||
		strings.Contains(name, "token")
}

// genericRows reads up to limit rows of sms.<name>, newest first (by the
// first of received_at, created_at it has): account scope's rows, or with
// scope 0 every account's, or with unrouted those of no account.
func (r *reader) genericRows(ctx context.Context, name string, scope int64, unrouted bool, limit int) (genericTable, error) {
	out := genericTable{Name: name}
	t, err := r.table(ctx, name)
	if err != nil || !t.exists {
		return out, err
	}
	hasAccount := false
	order := ""
	for _, col := range t.columns {
		switch col {
		case "account_id":
			hasAccount = true
		case "received_at", "created_at":
			if order == "" {
				order = col
			}
		}
	}
	if scope != 0 && !hasAccount {
		return out, nil // can't be limited to an account: not shown
	}
	out.Exists = true
	for _, col := range t.columns {
		if hiddenColumn(col) || (col == "account_id" && scope != 0) {
			continue
		}
		out.Columns = append(out.Columns, col)
	}
	query := `SELECT to_jsonb(t) FROM sms.` + pq.QuoteIdentifier(name) + ` t`
	var args []any
	switch {
	case scope != 0:
		args = append(args, scope)
		query += ` WHERE t.account_id = $1`
	case unrouted && hasAccount:
		query += ` WHERE t.account_id IS NULL`
	case hasAccount:
		query += ` WHERE t.account_id IS NOT NULL`
	}
	if order != "" {
		query += ` ORDER BY t.` + pq.QuoteIdentifier(order) + ` DESC`
	}
	args = append(args, limit+1)
	query += ` LIMIT $` + strconv.Itoa(len(args))
	var raws [][]byte
	if err := r.db.SelectContext(ctx, &raws, query, args...); err != nil {
		return out, dbErr("read "+name, err)
	}
	if len(raws) > limit {
		raws, out.Limited = raws[:limit], true
	}
	for _, raw := range raws {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(raw, &obj); err != nil {
			return out, fmt.Errorf("read %s: %w", name, err)
		}
		row := make([]string, len(out.Columns))
		for i, col := range out.Columns {
			row[i] = jsonText(obj[col])
		}
		out.Rows = append(out.Rows, row)
	}
	return out, nil
}

// jsonText shows a JSON value as text: strings as they are, null as "".
func jsonText(v json.RawMessage) string {
	if len(v) == 0 || string(v) == "null" {
		return ""
	}
	var s string
	if json.Unmarshal(v, &s) == nil {
		// Timestamps as the rest of the console writes them.
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			return fmtTime(t)
		}
		return s
	}
	return string(v)
}

// deliveryRow is one webhook delivery of a message.
type deliveryRow struct {
	ID            uuid.UUID  `db:"id"`
	WebhookID     uuid.UUID  `db:"webhook_id"`
	EndpointID    uuid.UUID  `db:"endpoint_id"`
	URL           string     `db:"url"`
	EventType     string     `db:"event_type"`
	Sequence      *int       `db:"sequence"`
	State         string     `db:"state"`
	Attempts      int        `db:"attempts"`
	NextAttemptAt *time.Time `db:"next_attempt_at"`
	CreatedAt     time.Time  `db:"created_at"`
	StatusCode    *int       `db:"status_code"`
	Error         *string    `db:"error"`
	AttemptedAt   *time.Time `db:"attempted_at"`
}

// messageDeliveries lists the webhook deliveries of m, with each one's last
// attempt. sms.webhook_deliveries has no index on message_id alone, so the
// lookup goes through the account's endpoints and the (endpoint_id,
// created_at) index over the message's lifetime (plus an hour for replays
// soon after); nil when webhooks are not installed.
func (r *reader) messageDeliveries(ctx context.Context, m sms.Message) ([]deliveryRow, bool, error) {
	t, err := r.table(ctx, "webhook_deliveries")
	if err != nil || !t.exists {
		return nil, false, err
	}
	var out []deliveryRow
	err = r.db.SelectContext(ctx, &out, `
        SELECT d.id, d.webhook_id, d.endpoint_id, w.url, d.event_type, d.sequence, d.state, d.attempts, d.next_attempt_at,
            d.created_at, a.status_code, a.error, a.attempted_at
        FROM sms.webhook_endpoints w
        JOIN sms.webhook_deliveries d ON d.endpoint_id = w.id AND d.created_at >= $3 AND d.created_at <= $4 AND d.message_id = $1
        LEFT JOIN LATERAL (
            SELECT x.status_code, x.error, x.attempted_at FROM sms.webhook_attempts x
            WHERE x.delivery_id = d.id ORDER BY x.attempt DESC LIMIT 1) a ON true
        WHERE w.account_id = $2
        ORDER BY d.sequence NULLS LAST, d.created_at LIMIT 200`,
		m.ID, m.AccountID, m.CreatedAt.Add(-time.Minute), m.UpdatedAt.Add(time.Hour))
	if err != nil {
		return nil, true, dbErr("webhook deliveries of message", err)
	}
	return out, true, nil
}

// webhookQueue counts the pending webhook deliveries of account scope (0:
// all) and dates the oldest; ok is false when webhooks are not installed.
func (r *reader) webhookQueue(ctx context.Context, scope int64) (pending int64, oldest time.Time, ok bool, err error) {
	t, err := r.table(ctx, "webhook_deliveries")
	if err != nil || !t.exists {
		return 0, time.Time{}, false, err
	}
	var old sql.NullTime
	if scope == 0 {
		err = r.db.QueryRowxContext(ctx, `SELECT count(*), min(created_at) FROM sms.webhook_deliveries WHERE state = 'pending'`).Scan(&pending, &old)
	} else {
		err = r.db.QueryRowxContext(ctx, `
            SELECT count(*), min(d.created_at) FROM sms.webhook_endpoints w
            JOIN sms.webhook_deliveries d ON d.endpoint_id = w.id AND d.state = 'pending'
            WHERE w.account_id = $1`, scope).Scan(&pending, &old)
	}
	if err != nil {
		return 0, time.Time{}, true, dbErr("webhook queue", err)
	}
	return pending, old.Time, true, nil
}

// minuteCount is how many messages accepted in one minute stand in one
// status now.
type minuteCount struct {
	Account int64      `db:"account_id"`
	Ago     int        `db:"ago"`
	Status  sms.Status `db:"status"`
	N       int64      `db:"n"`
	Oldest  time.Time  `db:"oldest"`
}

// chartLimit bounds the messages the chart reads per account: past it the
// chart covers less than the hour, and says so.
const chartLimit = 200_000

// recentByMinute counts the messages of account scope (0: every account)
// accepted in the hour before now, by minute (0: the current one) and the
// status they have now, through the (account, created_at) index, at most
// chartLimit per account.
func (r *reader) recentByMinute(ctx context.Context, scope int64, now time.Time) ([]minuteCount, error) {
	since := now.Add(-time.Hour)
	var out []minuteCount
	var err error
	const pick = `SELECT m.created_at, m.status FROM sms.messages m WHERE m.account_id = %s AND m.created_at >= $2 AND m.created_at <= $3
        ORDER BY m.created_at DESC LIMIT $4`
	const group = `floor(extract(epoch FROM ($3 - r.created_at)) / 60)::int AS ago, r.status, count(*) AS n, min(r.created_at) AS oldest`
	if scope != 0 {
		err = r.db.SelectContext(ctx, &out, `SELECT $1::bigint AS account_id, `+group+` FROM (`+fmt.Sprintf(pick, "$1")+`) r GROUP BY 2, 3`,
			scope, since, now, chartLimit)
	} else {
		err = r.db.SelectContext(ctx, &out, `SELECT a.id AS account_id, `+group+` FROM sms.accounts a CROSS JOIN LATERAL (`+
			fmt.Sprintf(pick, "a.id")+`) r WHERE $1::bigint = 0 GROUP BY 1, 2, 3`, scope, since, now, chartLimit)
	}
	if err != nil {
		return nil, dbErr("recent messages by minute", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Ago > out[j].Ago })
	return out, nil
}
