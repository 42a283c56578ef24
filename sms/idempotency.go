package sms

import (
	"crypto/sha256"
	"strconv"
	"time"
)

// IdempotencyTTL is how long an Idempotency-Key is remembered.
const IdempotencyTTL = 24 * time.Hour

// RequestHash identifies the content of a send request for idempotency.
func RequestHash(d Draft) []byte {
	h := sha256.New()
	at, validity := "", ""
	if d.SendAt != nil {
		at = d.SendAt.Format(time.RFC3339Nano)
	}
	if d.ValidityPeriod != nil {
		validity = strconv.Itoa(*d.ValidityPeriod)
	}
	fields := []string{d.Sender, d.Recipient, d.Text}
	// Only fields set beyond their defaults count, so keys stored before
	// those fields existed still match the same request.
	if d.Priority != "" && d.Priority != PriorityNormal || at != "" || validity != "" {
		fields = append(fields, string(d.Priority), at, validity)
	}
	for _, s := range fields {
		h.Write([]byte(strconv.Itoa(len(s))))
		h.Write([]byte{':'})
		h.Write([]byte(s))
	}
	return h.Sum(nil)
}
