package sms

import "time"

// InboundReport is how the processor hands a message a handset sent to the
// API: the body of POST /v1/internal/inbound. Handing the same
// CarrierMessageID twice changes nothing.
type InboundReport struct {
	From             string    `json:"from"`
	To               string    `json:"to"`
	Text             string    `json:"text"`
	ReceivedAt       time.Time `json:"received_at"`
	CarrierMessageID string    `json:"carrier_message_id"`
}
