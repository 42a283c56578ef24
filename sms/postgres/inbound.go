package postgres

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/smsctl/smsctl/sms"
)

// Inbound keeps what two-way messaging needs in schema sms: the numbers
// accounts own, the messages handsets send to them, each account's keyword
// settings, and the suppressions (opt-outs). It shares the Store's counter
// shards and commit hook, because an automatic reply is a message like any
// other: committed with its first event, its outbox row and its counts, and
// handed to the relay once committed.
type Inbound struct {
	store *Store
	db    *sqlx.DB
	cache *Suppressions
}

// NewInbound returns the two-way messaging store on store's database.
// cache, when not nil, is told of the suppressions this store changes
// before the call that changed them returns.
func NewInbound(store *Store, cache *Suppressions) *Inbound {
	return &Inbound{store: store, db: store.db, cache: cache}
}

// routeSQL finds the account that owns a number and its keyword settings.
const routeSQL = `
SELECT n.account_id, k.stop_words, k.start_words, k.help_words,
    COALESCE(k.stop_reply, '') AS stop_reply, COALESCE(k.start_reply, '') AS start_reply, COALESCE(k.help_reply, '') AS help_reply
FROM sms.numbers n LEFT JOIN sms.keyword_settings k ON k.account_id = n.account_id
WHERE n.number = $1`

// settingsRow is a row of sms.keyword_settings; NULL lists stay nil.
type settingsRow struct {
	StopWords  pq.StringArray `db:"stop_words"`
	StartWords pq.StringArray `db:"start_words"`
	HelpWords  pq.StringArray `db:"help_words"`
	StopReply  string         `db:"stop_reply"`
	StartReply string         `db:"start_reply"`
	HelpReply  string         `db:"help_reply"`
}

func (r settingsRow) settings() sms.KeywordSettings {
	list := func(a pq.StringArray) []string {
		if a == nil {
			return nil
		}
		return []string(a)
	}
	return sms.KeywordSettings{StopWords: list(r.StopWords), StartWords: list(r.StartWords), HelpWords: list(r.HelpWords),
		StopReply: r.StopReply, StartReply: r.StartReply, HelpReply: r.HelpReply}
}

// HelpReplyInterval is the least time between two automatic HELP replies
// to one handset from one account: an auto-responder that answers every
// message with HELP must not make the two numbers talk forever.
const HelpReplyInterval = 5 * time.Minute

// Receive takes a message a handset sent, normalized
// (sms.InboundReport.Normalize), in one transaction: the message is kept
// for the account that owns r.To (unrouted when nobody does); a keyword
// is applied (STOP suppresses r.From for the account, START lifts it);
// the keyword gets an automatic reply from r.To, marked so that the
// processor's claim sends it even to a suppressed recipient; and the
// message.received webhook is queued. Once Receive returns, the
// suppression holds. A carrier_message_id taken before changes nothing and
// returns what the first call did, with Duplicate set.
//
// Replies are what confirms a change, so that no two automatic responders
// can answer each other forever: STOP is confirmed when it suppressed the
// sender (not again while it stays suppressed), START when it lifted a
// suppression (a YES to some question gets no "subscribed again"), and
// HELP at most once per HelpReplyInterval.
func (in *Inbound) Receive(ctx context.Context, r sms.InboundReport) (sms.InboundResult, error) {
	var route struct {
		AccountID int64 `db:"account_id"`
		settingsRow
	}
	err := in.db.GetContext(ctx, &route, routeSQL, r.To)
	routed := err == nil
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return sms.InboundResult{}, storeErr("route inbound message", err)
	}
	msg := sms.InboundMessage{ID: sms.NewID(), From: r.From, To: r.To, Text: r.Text, ReceivedAt: r.ReceivedAt,
		CarrierMessageID: r.CarrierMessageID, CreatedAt: time.Now().UTC().Truncate(time.Microsecond)}
	settings := route.settings()
	if routed {
		msg.AccountID = &route.AccountID
		if kw := settings.Classify(r.Text); kw != "" {
			msg.Keyword = &kw
		}
	}
	if msg.Keyword == nil {
		return in.receivePlain(ctx, msg)
	}

	tx, err := in.db.BeginTxx(ctx, nil)
	if err != nil {
		return sms.InboundResult{}, storeErr("begin", err)
	}
	defer func() { _ = tx.Rollback() }()
	res, err := tx.ExecContext(ctx, `
        INSERT INTO sms.inbound_messages (id, account_id, sender, recipient, text, received_at, carrier_message_id, keyword, created_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
        ON CONFLICT (carrier_message_id) DO NOTHING`,
		msg.ID, msg.AccountID, msg.From, msg.To, msg.Text, msg.ReceivedAt, msg.CarrierMessageID, msg.Keyword, msg.CreatedAt)
	if err != nil {
		return sms.InboundResult{}, storeErr("insert inbound message", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return sms.InboundResult{}, storeErr("insert inbound message", err)
	} else if n == 0 {
		// Taken before (or by a concurrent call, which this one waited for).
		_ = tx.Rollback()
		return in.received(ctx, r.CarrierMessageID)
	}
	// Routed, with a keyword.
	reply, changed := false, false
	res = nil
	switch *msg.Keyword {
	case sms.KeywordStop:
		res, err = tx.ExecContext(ctx, `INSERT INTO sms.suppressions (account_id, phone, reason) VALUES ($1, $2, $3)
            ON CONFLICT (account_id, phone) DO NOTHING`, route.AccountID, r.From, sms.ReasonStop)
	case sms.KeywordStart:
		res, err = tx.ExecContext(ctx, `DELETE FROM sms.suppressions WHERE account_id = $1 AND phone = $2`, route.AccountID, r.From)
	case sms.KeywordHelp:
		err = tx.GetContext(ctx, &reply, `SELECT NOT EXISTS (SELECT 1 FROM sms.inbound_messages
            WHERE account_id = $1 AND sender = $2 AND keyword = 'help' AND reply_message_id IS NOT NULL
                AND created_at > now() - $3::interval)`, route.AccountID, r.From, fmt.Sprintf("%d milliseconds", HelpReplyInterval.Milliseconds()))
	}
	if err != nil {
		return sms.InboundResult{}, storeErr("apply keyword", err)
	}
	if res != nil {
		n, err := res.RowsAffected()
		if err != nil {
			return sms.InboundResult{}, storeErr("apply keyword", err)
		}
		changed = n > 0
		reply = changed
	}
	var replyMsg sms.Message
	if reply {
		text := settings.Reply(*msg.Keyword)
		enc, segments := sms.Segments(text)
		replyMsg = newMessages([]sms.NewMessage{{AccountID: route.AccountID, Draft: sms.Draft{
			Sender: r.To, Recipient: r.From, Text: text, Encoding: enc, Segments: segments,
			// A confirmation must not wait behind a campaign.
			Priority: sms.PriorityHigh,
		}}})[0]
		msg.ReplyMessageID = &replyMsg.ID
		if _, err := tx.ExecContext(ctx, `UPDATE sms.inbound_messages SET reply_message_id = $2 WHERE id = $1`, msg.ID, replyMsg.ID); err != nil {
			return sms.InboundResult{}, storeErr("link keyword reply", err)
		}
	}
	data, err := json.Marshal(msg)
	if err != nil {
		return sms.InboundResult{}, fmt.Errorf("encode inbound message: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `SELECT sms.queue_webhook($1, 'message.received', $2, $3::jsonb)`,
		route.AccountID, msg.ReceivedAt, string(data)); err != nil {
		return sms.InboundResult{}, storeErr("queue message.received webhook", err)
	}
	var batch sms.OutboxBatch
	commit := func() error {
		if err := tx.Commit(); err != nil {
			return storeErr("commit", err)
		}
		return nil
	}
	if reply {
		err = in.store.withShard(ctx, func(shard int) error {
			insert, err := in.store.prepared(ctx, insertSQL)
			if err != nil {
				return err
			}
			if batch, err = insertMessages(ctx, tx.StmtxContext(ctx, insert), []sms.Message{replyMsg}, []string{""}, shard, nil); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `UPDATE sms.messages SET keyword_reply = true WHERE id = $1`, replyMsg.ID); err != nil {
				return storeErr("mark keyword reply", err)
			}
			return commit()
		})
	} else {
		err = commit()
	}
	if err != nil {
		return sms.InboundResult{}, err
	}
	if changed {
		in.changed(route.AccountID, r.From)
	}
	if len(batch.Records) > 0 {
		in.store.committed(batch)
	}
	return sms.InboundResult{ID: msg.ID, AccountRouted: true, Keyword: msg.Keyword, ReplyMessageID: msg.ReplyMessageID}, nil
}

// receivePlain takes a message that is no keyword in one statement (its
// own transaction): the message and, when routed, its webhook.
func (in *Inbound) receivePlain(ctx context.Context, msg sms.InboundMessage) (sms.InboundResult, error) {
	var data *string
	if msg.AccountID != nil {
		b, err := json.Marshal(msg)
		if err != nil {
			return sms.InboundResult{}, fmt.Errorf("encode inbound message: %w", err)
		}
		s := string(b)
		data = &s
	}
	var queued int
	err := in.db.GetContext(ctx, &queued, `
        WITH ins AS (
            INSERT INTO sms.inbound_messages (id, account_id, sender, recipient, text, received_at, carrier_message_id, created_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
            ON CONFLICT (carrier_message_id) DO NOTHING
            RETURNING account_id
        )
        SELECT CASE WHEN account_id IS NULL THEN 0 ELSE sms.queue_webhook(account_id, 'message.received', $6, $9::jsonb) END FROM ins`,
		msg.ID, msg.AccountID, msg.From, msg.To, msg.Text, msg.ReceivedAt, msg.CarrierMessageID, msg.CreatedAt, data)
	if errors.Is(err, sql.ErrNoRows) {
		return in.received(ctx, msg.CarrierMessageID)
	}
	if err != nil {
		return sms.InboundResult{}, storeErr("insert inbound message", err)
	}
	return sms.InboundResult{ID: msg.ID, AccountRouted: msg.AccountID != nil}, nil
}

// received is what the first Receive of carrierID did.
func (in *Inbound) received(ctx context.Context, carrierID string) (sms.InboundResult, error) {
	var m sms.InboundMessage
	err := in.db.GetContext(ctx, &m, `SELECT `+inboundColumns+` FROM sms.inbound_messages WHERE carrier_message_id = $1`, carrierID)
	if err != nil {
		return sms.InboundResult{}, storeErr("read inbound message", err)
	}
	return sms.InboundResult{ID: m.ID, AccountRouted: m.AccountID != nil, Keyword: m.Keyword, ReplyMessageID: m.ReplyMessageID,
		Duplicate: true}, nil
}

const inboundColumns = `id, account_id, sender, recipient, text, keyword, received_at, carrier_message_id, reply_message_id, created_at`

// InboundMessage returns the account's inbound message id, or
// sms.ErrNotFound.
func (in *Inbound) InboundMessage(ctx context.Context, accountID int64, id uuid.UUID) (sms.InboundMessage, error) {
	var m sms.InboundMessage
	err := in.db.GetContext(ctx, &m, `SELECT `+inboundColumns+` FROM sms.inbound_messages WHERE id = $1 AND account_id = $2`, id, accountID)
	if errors.Is(err, sql.ErrNoRows) {
		return sms.InboundMessage{}, sms.ErrNotFound
	}
	if err != nil {
		return sms.InboundMessage{}, storeErr("get inbound message", err)
	}
	return m, nil
}

// InboundMessages returns the page of the account's inbound messages that
// f selects, newest first, through the (account, [sender|recipient],
// received_at, id) indexes. Unrouted messages are never in it.
func (in *Inbound) InboundMessages(ctx context.Context, accountID int64, f sms.InboundFilter) (sms.InboundPage, error) {
	args := []any{accountID}
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	where := []string{"account_id = $1"}
	if f.From != "" {
		where = append(where, "sender = "+arg(f.From))
	}
	if f.To != "" {
		where = append(where, "recipient = "+arg(f.To))
	}
	if f.Since != nil {
		where = append(where, "received_at >= "+arg(*f.Since))
	}
	if f.Until != nil {
		where = append(where, "received_at < "+arg(*f.Until))
	}
	filters := strings.Join(where, " AND ")
	countArgs := slices.Clone(args)
	page := filters
	offset := 0
	if f.After != nil {
		page += fmt.Sprintf(" AND (received_at, id) < (%s, %s)", arg(f.After.CreatedAt), arg(f.After.ID))
	} else {
		offset = f.Page * f.Size
	}
	query := fmt.Sprintf(`SELECT %s FROM sms.inbound_messages WHERE %s ORDER BY received_at DESC, id DESC LIMIT %s OFFSET %s`,
		inboundColumns, page, arg(f.Size+1), arg(offset))
	var msgs []sms.InboundMessage
	if err := in.db.SelectContext(ctx, &msgs, query, args...); err != nil {
		return sms.InboundPage{}, storeErr("list inbound messages", err)
	}
	p := sms.InboundPage{Messages: msgs}
	if len(msgs) > f.Size {
		p.Messages = msgs[:f.Size]
		last := p.Messages[f.Size-1]
		p.Next = &sms.Cursor{CreatedAt: last.ReceivedAt, ID: last.ID}
	}
	if p.Messages == nil {
		p.Messages = []sms.InboundMessage{}
	}
	if err := in.db.GetContext(ctx, &p.TotalCount, `SELECT count(*) FROM sms.inbound_messages WHERE `+filters, countArgs...); err != nil {
		return sms.InboundPage{}, storeErr("count inbound messages", err)
	}
	return p, nil
}

// Unrouted returns the latest limit messages to numbers nobody owns, for
// operators.
func (in *Inbound) Unrouted(ctx context.Context, limit int) ([]sms.InboundMessage, error) {
	var msgs []sms.InboundMessage
	err := in.db.SelectContext(ctx, &msgs, `SELECT `+inboundColumns+` FROM sms.inbound_messages WHERE account_id IS NULL
        ORDER BY received_at DESC, id DESC LIMIT $1`, limit)
	if err != nil {
		return nil, storeErr("list unrouted messages", err)
	}
	return msgs, nil
}

// UnroutedNumbers lists the numbers nobody owns that received messages,
// busiest first: the numbers an operator may have forgotten to assign.
func (in *Inbound) UnroutedNumbers(ctx context.Context, limit int) ([]sms.UnroutedNumber, error) {
	var out []sms.UnroutedNumber
	err := in.db.SelectContext(ctx, &out, `
        SELECT recipient AS number, count(*) AS messages, max(received_at) AS last_received
        FROM sms.inbound_messages WHERE account_id IS NULL
        GROUP BY recipient ORDER BY messages DESC, number LIMIT $1`, limit)
	if err != nil {
		return nil, storeErr("list unrouted numbers", err)
	}
	return out, nil
}

// Numbers returns the account's numbers.
func (in *Inbound) Numbers(ctx context.Context, accountID int64) ([]sms.Number, error) {
	out := []sms.Number{}
	err := in.db.SelectContext(ctx, &out, `
        SELECT n.number, a.name AS account, n.created_at FROM sms.numbers n JOIN sms.accounts a ON a.id = n.account_id
        WHERE n.account_id = $1 ORDER BY n.number`, accountID)
	if err != nil {
		return nil, storeErr("list numbers", err)
	}
	return out, nil
}

// ListNumbers returns the numbers of the account named account, or of
// every account when it is "".
func (in *Inbound) ListNumbers(ctx context.Context, account string) ([]sms.Number, error) {
	query := `SELECT n.number, a.name AS account, n.created_at FROM sms.numbers n JOIN sms.accounts a ON a.id = n.account_id`
	args := []any{}
	if account != "" {
		id, err := in.accountID(ctx, account)
		if err != nil {
			return nil, err
		}
		query += ` WHERE n.account_id = $1`
		args = append(args, id)
	}
	out := []sms.Number{}
	if err := in.db.SelectContext(ctx, &out, query+` ORDER BY a.name, n.number`, args...); err != nil {
		return nil, storeErr("list numbers", err)
	}
	return out, nil
}

// accountID looks up an account by name.
func (in *Inbound) accountID(ctx context.Context, account string) (int64, error) {
	name, err := sms.NormalizeAccountName(account)
	if err != nil {
		return 0, err
	}
	var id int64
	err = in.db.GetContext(ctx, &id, `SELECT id FROM sms.accounts WHERE name = $1`, name)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, &sms.Error{Code: sms.CodeNotFound, Message: fmt.Sprintf("no account named %q (accounts are created with their first API key: smsctl apikey create --account NAME)", name)}
	}
	if err != nil {
		return 0, storeErr("find account", err)
	}
	return id, nil
}

// numberOwner returns the name of the account that owns number, or "".
func (in *Inbound) numberOwner(ctx context.Context, number string) (string, error) {
	var name string
	err := in.db.GetContext(ctx, &name, `SELECT a.name FROM sms.numbers n JOIN sms.accounts a ON a.id = n.account_id WHERE n.number = $1`, number)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", storeErr("find number", err)
	}
	return name, nil
}

// KindNumberTaken is the Kind of the error AddNumber returns for a number
// another account owns.
const KindNumberTaken = "number-taken"

// AddNumber gives number (E.164, normalized) to the account named account:
// added is false when it had it already. A number another account owns is
// a conflict naming that account.
func (in *Inbound) AddNumber(ctx context.Context, account, number string) (n sms.Number, added bool, err error) {
	id, err := in.accountID(ctx, account)
	if err != nil {
		return sms.Number{}, false, err
	}
	name, _ := sms.NormalizeAccountName(account)
	n = sms.Number{Number: number, Account: name}
	for range 3 { // a number removed meanwhile is tried again
		err = in.db.GetContext(ctx, &n.CreatedAt, `INSERT INTO sms.numbers (number, account_id) VALUES ($1, $2)
            ON CONFLICT (number) DO NOTHING RETURNING created_at`, number, id)
		if err == nil {
			return n, true, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return sms.Number{}, false, storeErr("add number", err)
		}
		var owner struct {
			AccountID int64     `db:"account_id"`
			Name      string    `db:"name"`
			CreatedAt time.Time `db:"created_at"`
		}
		err = in.db.GetContext(ctx, &owner, `SELECT n.account_id, a.name, n.created_at FROM sms.numbers n
            JOIN sms.accounts a ON a.id = n.account_id WHERE n.number = $1`, number)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			continue
		case err != nil:
			return sms.Number{}, false, storeErr("find number", err)
		case owner.AccountID != id:
			return sms.Number{}, false, &sms.Error{Code: sms.CodeConflict, Kind: KindNumberTaken,
				Message: fmt.Sprintf("number %s belongs to account %q; remove it there first (smsctl number remove --account %q %s)", number, owner.Name, owner.Name, number)}
		}
		n.CreatedAt = owner.CreatedAt
		return n, false, nil
	}
	return sms.Number{}, false, fmt.Errorf("add number %s: it keeps changing owner", number)
}

// RemoveNumber takes number away from the account named account:
// sms.ErrNotFound-like when the account does not own it (saying who does).
func (in *Inbound) RemoveNumber(ctx context.Context, account, number string) error {
	id, err := in.accountID(ctx, account)
	if err != nil {
		return err
	}
	res, err := in.db.ExecContext(ctx, `DELETE FROM sms.numbers WHERE number = $1 AND account_id = $2`, number, id)
	if err != nil {
		return storeErr("remove number", err)
	}
	if n, _ := res.RowsAffected(); n > 0 {
		return nil
	}
	owner, err := in.numberOwner(ctx, number)
	if err != nil {
		return err
	}
	msg := fmt.Sprintf("account %q does not own number %s", account, number)
	if owner != "" {
		msg += fmt.Sprintf("; account %q does", owner)
	}
	return &sms.Error{Code: sms.CodeNotFound, Message: msg}
}

// KeywordSettings returns the account's keyword settings as set: nil lists
// and empty replies are the defaults (sms.KeywordSettings.WithDefaults).
func (in *Inbound) KeywordSettings(ctx context.Context, accountID int64) (sms.KeywordSettings, error) {
	var row settingsRow
	err := in.db.GetContext(ctx, &row, `SELECT stop_words, start_words, help_words, COALESCE(stop_reply, '') AS stop_reply,
        COALESCE(start_reply, '') AS start_reply, COALESCE(help_reply, '') AS help_reply
        FROM sms.keyword_settings WHERE account_id = $1`, accountID)
	if errors.Is(err, sql.ErrNoRows) {
		return sms.KeywordSettings{}, nil
	}
	if err != nil {
		return sms.KeywordSettings{}, storeErr("read keyword settings", err)
	}
	return row.settings(), nil
}

// SetKeywordSettings replaces the account's keyword settings with s,
// normalized (sms.KeywordSettings.Normalize); nil lists and empty replies
// are stored as NULL, the defaults.
func (in *Inbound) SetKeywordSettings(ctx context.Context, accountID int64, s sms.KeywordSettings) error {
	list := func(words []string) any {
		if words == nil {
			return nil
		}
		return pq.StringArray(words)
	}
	text := func(s string) any {
		if s == "" {
			return nil
		}
		return s
	}
	_, err := in.db.ExecContext(ctx, `
        INSERT INTO sms.keyword_settings AS k (account_id, stop_words, start_words, help_words, stop_reply, start_reply, help_reply)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        ON CONFLICT (account_id) DO UPDATE SET stop_words = EXCLUDED.stop_words, start_words = EXCLUDED.start_words,
            help_words = EXCLUDED.help_words, stop_reply = EXCLUDED.stop_reply, start_reply = EXCLUDED.start_reply,
            help_reply = EXCLUDED.help_reply, updated_at = now()`,
		accountID, list(s.StopWords), list(s.StartWords), list(s.HelpWords), text(s.StopReply), text(s.StartReply), text(s.HelpReply))
	if err != nil {
		return storeErr("save keyword settings", err)
	}
	return nil
}

// Suppression returns the account's suppression of phone, or
// sms.ErrNotFound.
func (in *Inbound) Suppression(ctx context.Context, accountID int64, phone string) (sms.Suppression, error) {
	var s sms.Suppression
	err := in.db.GetContext(ctx, &s, `SELECT phone, reason, created_at FROM sms.suppressions WHERE account_id = $1 AND phone = $2`, accountID, phone)
	if errors.Is(err, sql.ErrNoRows) {
		return sms.Suppression{}, sms.ErrNotFound
	}
	if err != nil {
		return sms.Suppression{}, storeErr("get suppression", err)
	}
	return s, nil
}

// Suppressions returns the page of the account's suppressions that f
// selects, newest first.
func (in *Inbound) Suppressions(ctx context.Context, accountID int64, f sms.SuppressionFilter) (sms.SuppressionPage, error) {
	args := []any{accountID, f.Size + 1}
	after := ""
	if f.After != nil {
		args = append(args, f.After.CreatedAt, f.After.Phone)
		after = " AND (created_at, phone) < ($3, $4)"
	}
	var out []sms.Suppression
	err := in.db.SelectContext(ctx, &out, `SELECT phone, reason, created_at FROM sms.suppressions WHERE account_id = $1`+after+`
        ORDER BY created_at DESC, phone DESC LIMIT $2`, args...)
	if err != nil {
		return sms.SuppressionPage{}, storeErr("list suppressions", err)
	}
	p := sms.SuppressionPage{Suppressions: out}
	if len(out) > f.Size {
		p.Suppressions = out[:f.Size]
		last := p.Suppressions[f.Size-1]
		p.Next = &sms.SuppressionCursor{CreatedAt: last.CreatedAt, Phone: last.Phone}
	}
	if p.Suppressions == nil {
		p.Suppressions = []sms.Suppression{}
	}
	if err := in.db.GetContext(ctx, &p.TotalCount, `SELECT count(*) FROM sms.suppressions WHERE account_id = $1`, accountID); err != nil {
		return sms.SuppressionPage{}, storeErr("count suppressions", err)
	}
	return p, nil
}

// AddSuppression suppresses phone (E.164) for the account: created is
// false, and the entry the one there was, when it was suppressed already.
func (in *Inbound) AddSuppression(ctx context.Context, accountID int64, phone, reason string) (s sms.Suppression, created bool, err error) {
	for range 3 { // an entry deleted meanwhile is tried again
		err = in.db.GetContext(ctx, &s, `INSERT INTO sms.suppressions (account_id, phone, reason) VALUES ($1, $2, $3)
            ON CONFLICT (account_id, phone) DO NOTHING RETURNING phone, reason, created_at`, accountID, phone, reason)
		if err == nil {
			in.changed(accountID, phone)
			return s, true, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return sms.Suppression{}, false, storeErr("add suppression", err)
		}
		s, err = in.Suppression(ctx, accountID, phone)
		if !errors.Is(err, sms.ErrNotFound) {
			return s, false, err
		}
	}
	return sms.Suppression{}, false, fmt.Errorf("add suppression: it keeps being deleted")
}

// AddSuppressions suppresses phones (E.164) for the account in one
// statement, and returns how many were not suppressed before.
func (in *Inbound) AddSuppressions(ctx context.Context, accountID int64, phones []string, reason string) (int64, error) {
	res, err := in.db.ExecContext(ctx, `INSERT INTO sms.suppressions (account_id, phone, reason)
        SELECT $1, p, $3 FROM unnest($2::text[]) AS p ON CONFLICT (account_id, phone) DO NOTHING`, accountID, pq.Array(phones), reason)
	if err != nil {
		return 0, storeErr("add suppressions", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, storeErr("add suppressions", err)
	}
	if in.cache != nil {
		in.cache.changed(accountID)
	}
	return n, nil
}

// RemoveSuppression lifts the account's suppression of phone, or returns
// sms.ErrNotFound.
func (in *Inbound) RemoveSuppression(ctx context.Context, accountID int64, phone string) error {
	res, err := in.db.ExecContext(ctx, `DELETE FROM sms.suppressions WHERE account_id = $1 AND phone = $2`, accountID, phone)
	if err != nil {
		return storeErr("remove suppression", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return sms.ErrNotFound
	}
	in.changed(accountID, phone)
	return nil
}

func (in *Inbound) changed(accountID int64, phone string) {
	if in.cache != nil {
		in.cache.changed(accountID, phone)
	}
}
