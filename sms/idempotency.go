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
	for _, s := range []string{d.Sender, d.Recipient, d.Text} {
		h.Write([]byte(strconv.Itoa(len(s))))
		h.Write([]byte{':'})
		h.Write([]byte(s))
	}
	return h.Sum(nil)
}
