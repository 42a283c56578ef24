// Package platform is the plumbing both roles share: logging, PostgreSQL,
// Kafka clients, the HTTP server with its health and metrics endpoints, and
// process lifecycle. It knows nothing about SMS.
package platform
