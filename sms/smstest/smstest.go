// Package smstest holds helpers the tests of the sms adapters share:
// drafts to store, and looks into the sms schema that no API offers.
package smstest

import (
	"testing"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/smsctl/smsctl/sms"
)

// Draft returns a valid draft with its encoding and segments worked out.
func Draft(sender, recipient, text string) sms.Draft {
	enc, n := sms.Segments(text)
	return sms.Draft{Sender: sender, Recipient: recipient, Text: text, Encoding: enc, Segments: n}
}

// Outboxed lists the message ids in the outbox, in id order.
func Outboxed(tb testing.TB, db *sqlx.DB) []uuid.UUID {
	tb.Helper()
	var ids []uuid.UUID
	if err := db.Select(&ids, `SELECT unnest(message_ids) AS id FROM sms.outbox ORDER BY id`); err != nil {
		tb.Fatal(err)
	}
	return ids
}

// Counters reads an account's counters, summed over its shards.
func Counters(tb testing.TB, db *sqlx.DB, account int64) (pending, sent, failed int64) {
	tb.Helper()
	err := db.QueryRow(`SELECT COALESCE(sum(pending),0), COALESCE(sum(sent),0), COALESCE(sum(failed),0) FROM sms.account_counters WHERE account_id = $1`, account).Scan(&pending, &sent, &failed)
	if err != nil {
		tb.Fatalf("counters of account %d: %v", account, err)
	}
	return pending, sent, failed
}

// IDs returns the ids of msgs, in order.
func IDs(msgs []sms.Message) []uuid.UUID {
	out := make([]uuid.UUID, len(msgs))
	for i, m := range msgs {
		out[i] = m.ID
	}
	return out
}

// Count counts the rows of a table of schema sms.
func Count(tb testing.TB, db *sqlx.DB, table string) int {
	tb.Helper()
	var n int
	if err := db.Get(&n, `SELECT count(*) FROM sms.`+table); err != nil {
		tb.Fatalf("count %s: %v", table, err)
	}
	return n
}
