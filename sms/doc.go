// Package sms is the SMS service: the message domain, validation and SMS
// encoding facts, the PostgreSQL store, the HTTP API, and the outbox relay
// that hands accepted messages to Kafka. The contract types shared with the
// processor (the send request event and the delivery report) live here too.
package sms
