// Package e2e runs the built smsctl binary as separate api and processor
// processes against real PostgreSQL and Kafka, and breaks things on
// purpose: brokers stopped, processes killed, partitions moved.
package e2e
