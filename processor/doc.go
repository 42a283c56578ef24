// Package processor is the delivery side of smsctl: it consumes send
// requests from Kafka, asks the (simulated) carrier to deliver each message
// once, records the outcome in its own schema, and reports it to the API.
// Offsets are committed only up to the lowest record whose outcome is
// durably recorded, so a crash replays work instead of losing it.
package processor
