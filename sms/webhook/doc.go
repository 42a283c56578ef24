// Package webhook delivers an account's events to its webhook endpoints as
// the Standard Webhooks specification says: signed (webhook-id,
// webhook-timestamp, webhook-signature), retried on a schedule with the
// same id and body, and never to an internal address. Its Dispatcher takes
// due deliveries from a Store that several API replicas share.
package webhook
