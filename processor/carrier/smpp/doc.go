// Package smpp is the SMPP 3.4 carrier: transceiver binds to an SMSC, each
// with its own reconnect loop, window and rate; submit_sm with our own
// encoding and splitting; delivery receipts and inbound messages from
// deliver_sm, acknowledged only once the sink has taken them.
//
// gosmpp (github.com/linxGnu/gosmpp v0.3.1) provides the PDU codec and the
// connection; matching responses, the window, splitting and reconnecting
// are done here, where its own versions have known faults.
package smpp
