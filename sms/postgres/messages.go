package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/smsctl/smsctl/sms"
)

// messageColumns are what a Message is read from. This file holds the
// reads of messages: one, a page, counts and stats.
const messageColumns = `id, account_id, sender, recipient, text, status, failure_reason, encoding, segments, priority, send_at,
    validity_period, valid_until, carrier_message_id, delivered_at, retries, created_at, updated_at`

func getMessage(ctx context.Context, q sqlx.QueryerContext, accountID int64, id uuid.UUID) (sms.Message, error) {
	var m sms.Message
	err := sqlx.GetContext(ctx, q, &m, `SELECT `+messageColumns+` FROM sms.messages WHERE id = $1 AND account_id = $2`, id, accountID)
	if errors.Is(err, sql.ErrNoRows) {
		return sms.Message{}, sms.ErrNotFound
	}
	if err != nil {
		return sms.Message{}, storeErr("get message", err)
	}
	return m, nil
}

// Get returns the account's message with id, or sms.ErrNotFound.
func (s *Store) Get(ctx context.Context, accountID int64, id uuid.UUID) (sms.Message, error) {
	return getMessage(ctx, s.db, accountID, id)
}

// List returns the page of the account's messages that f selects. Pages
// read through the (account, [status|sender|recipient], created_at, id)
// indexes; the totals come from the account counters unless a phone is
// given.
func (s *Store) List(ctx context.Context, accountID int64, f sms.Filter) (sms.Page, error) {
	args := []any{accountID}
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	var where []string
	if f.Status != "" {
		where = append(where, "status = "+arg(string(f.Status)))
	}
	if f.After != nil {
		where = append(where, fmt.Sprintf("(created_at, id) < (%s, %s)", arg(f.After.CreatedAt), arg(f.After.ID)))
	}
	offset := 0
	if f.After == nil {
		offset = f.Page * f.Size
	}
	// One extra row tells whether another page follows.
	limit := arg(f.Size + 1)
	off := arg(offset)
	extra := ""
	if len(where) > 0 {
		extra = " AND " + strings.Join(where, " AND ")
	}
	const order = " ORDER BY created_at DESC, id DESC"
	var query string
	if f.Phone != "" {
		phone := arg(f.Phone)
		// Two ordered index scans merged, instead of one scan of the
		// account's messages filtered by an OR.
		// The parameters' types must be given: "unknown + unknown" is
		// ambiguous to PostgreSQL.
		inner := fmt.Sprintf("(SELECT %s FROM sms.messages WHERE account_id = $1 AND %%s = %s%s%s LIMIT %s::bigint + %s::bigint)",
			messageColumns, phone, extra, order, limit, off)
		query = fmt.Sprintf("SELECT %s FROM (%s UNION %s) m%s LIMIT %s OFFSET %s",
			messageColumns, fmt.Sprintf(inner, "sender"), fmt.Sprintf(inner, "recipient"), order, limit, off)
	} else {
		query = fmt.Sprintf("SELECT %s FROM sms.messages WHERE account_id = $1%s%s LIMIT %s OFFSET %s", messageColumns, extra, order, limit, off)
	}
	var msgs []sms.Message
	if err := sqlx.SelectContext(ctx, s.db, &msgs, query, args...); err != nil {
		return sms.Page{}, storeErr("list messages", err)
	}
	page := sms.Page{Messages: msgs}
	if len(msgs) > f.Size {
		page.Messages = msgs[:f.Size]
		last := page.Messages[f.Size-1]
		page.Next = &sms.Cursor{CreatedAt: last.CreatedAt, ID: last.ID}
	}
	if page.Messages == nil {
		page.Messages = []sms.Message{}
	}
	total, err := s.count(ctx, accountID, f.Status, f.Phone)
	if err != nil {
		return sms.Page{}, err
	}
	page.TotalCount = total
	return page, nil
}

func (s *Store) count(ctx context.Context, accountID int64, status sms.Status, phone string) (int64, error) {
	if phone == "" {
		st, err := s.Stats(ctx, accountID)
		if err != nil {
			return 0, err
		}
		if status != "" {
			return st.ByStatus[status], nil
		}
		return st.TotalMessages, nil
	}
	// Without a status filter, a union of the two per-phone indexes: both
	// arms are index-only scans, where the OR reads a heap page for every
	// message of the phone. Measured on 1,000,000 rows, a phone with 17,142
	// messages: 261 buffers and 28 ms against 16,846 buffers and 247 ms.
	// With a status filter the heap must be read anyway (the per-phone
	// indexes don't hold the status), and one bitmap scan does it best.
	query := `
        SELECT count(*) FROM (
            SELECT id FROM sms.messages WHERE account_id = $1 AND sender = $2
            UNION
            SELECT id FROM sms.messages WHERE account_id = $1 AND recipient = $2
        ) u`
	args := []any{accountID, phone}
	if status != "" {
		query = `
        SELECT count(*) FROM sms.messages
        WHERE account_id = $1 AND (sender = $2 OR recipient = $2) AND status = $3`
		args = append(args, string(status))
	}
	var n int64
	err := s.db.GetContext(ctx, &n, query, args...)
	if err != nil {
		return 0, storeErr("count messages", err)
	}
	return n, nil
}

// Stats returns the account's counts.
func (s *Store) Stats(ctx context.Context, accountID int64) (sms.Stats, error) {
	var c [8]int64
	err := s.db.QueryRowxContext(ctx, `
        SELECT COALESCE(sum(scheduled), 0), COALESCE(sum(pending), 0), COALESCE(sum(sent), 0), COALESCE(sum(delivered), 0),
               COALESCE(sum(undelivered), 0), COALESCE(sum(failed), 0), COALESCE(sum(expired), 0), COALESCE(sum(canceled), 0)
        FROM sms.account_counters WHERE account_id = $1`, accountID).
		Scan(&c[0], &c[1], &c[2], &c[3], &c[4], &c[5], &c[6], &c[7])
	if err != nil {
		return sms.Stats{}, storeErr("stats", err)
	}
	// The columns are in the order of sms.Statuses.
	byStatus := make(map[sms.Status]int64, len(sms.Statuses))
	for i, st := range sms.Statuses {
		byStatus[st] = c[i]
	}
	return sms.NewStats(byStatus), nil
}
