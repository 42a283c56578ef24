package sms

import (
	"encoding/json"
	"fmt"

	"github.com/google/uuid"
)

// OutboxRecord is the Kafka record of one message waiting in the outbox:
// keyed by recipient, so that one recipient's messages stay in order.
type OutboxRecord struct {
	MessageID uuid.UUID
	// Traceparent is the trace of the request that accepted the message.
	Traceparent string
	Key         string
	Payload     []byte
	// Priority picks the topic the record goes to.
	Priority Priority
}

// OutboxBatch is the outbox row of one committed insert and the records of
// its messages. Its ID is its first message's: UUIDv7, ordered by time.
type OutboxBatch struct {
	ID      uuid.UUID
	Records []OutboxRecord
}

// NewOutboxRecord builds m's Kafka record: its send request as JSON.
func NewOutboxRecord(m Message, traceparent string) (OutboxRecord, error) {
	payload, err := json.Marshal(m.SendRequest())
	if err != nil {
		return OutboxRecord{}, fmt.Errorf("encode send request: %w", err)
	}
	return OutboxRecord{MessageID: m.ID, Traceparent: traceparent, Key: m.Recipient, Payload: payload, Priority: m.Priority}, nil
}

// PriorityTopics are the request topics of a base topic, one per lane, as
// ADR-007 proposes: base.high, base (normal) and base.low.
func PriorityTopics(base string) map[Priority]string {
	return map[Priority]string{PriorityHigh: base + ".high", PriorityNormal: base, PriorityLow: base + ".low"}
}
