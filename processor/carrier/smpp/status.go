package smpp

import (
	"fmt"
	"strings"

	"github.com/linxGnu/gosmpp/data"
)

// statusDescriptions are the plain-words meaning of the command_status
// values this carrier names in failure reasons; others use gosmpp's.
var statusDescriptions = map[data.CommandStatusType]string{
	data.ESME_RINVMSGLEN:   "invalid message length",
	data.ESME_RINVBNDSTS:   "incorrect bind status for the command",
	data.ESME_RSYSERR:      "system error",
	data.ESME_RINVSRCADR:   "invalid source address",
	data.ESME_RINVDSTADR:   "invalid destination address",
	data.ESME_RBINDFAIL:    "bind failed",
	data.ESME_RINVPASWD:    "invalid password",
	data.ESME_RINVSYSID:    "invalid system id",
	data.ESME_RMSGQFUL:     "message queue full",
	data.ESME_RSUBMITFAIL:  "submit failed",
	data.ESME_RTHROTTLED:   "throttling error",
	data.ESME_RINVEXPIRY:   "invalid validity period",
	data.ESME_RX_T_APPN:    "temporary application error",
	data.ESME_RINVESMCLASS: "invalid esm_class",
}

// statusName is the command_status's SMPP name (ESME_RINVDSTADR), or its
// hex value when SMPP 3.4 does not define it (vendor codes).
func statusName(st data.CommandStatusType) string {
	if name := st.String(); !strings.HasPrefix(name, "CommandStatusType(") {
		return name
	}
	return statusHex(st)
}

// statusHex is the command_status as it is on the wire, an unsigned
// 32-bit value: 0x0000000B.
func statusHex(st data.CommandStatusType) string {
	return fmt.Sprintf("0x%08X", int64(st)&0xFFFFFFFF)
}

// statusDefined reports whether SMPP 3.4 defines st.
func statusDefined(st data.CommandStatusType) bool {
	return !strings.HasPrefix(st.String(), "CommandStatusType(")
}

// statusText is a command_status for people: "ESME_RINVDSTADR (0x0000000B)
// invalid destination address".
func statusText(st data.CommandStatusType) string {
	desc, ok := statusDescriptions[st]
	if !ok {
		desc = "vendor-specific error"
		if statusDefined(st) {
			desc = strings.ToLower(st.Desc())
		}
	}
	if !statusDefined(st) {
		return statusHex(st) + " " + desc
	}
	return fmt.Sprintf("%s (%s) %s", statusName(st), statusHex(st), desc)
}

// statusClass says what a submit_sm_resp (or generic_nack) status means
// for the message.
type statusClass int

const (
	classAccepted statusClass = iota
	// classThrottled: "slower" (ESME_RTHROTTLED, ESME_RMSGQFUL); the
	// message is retried after a pause, without counting the attempt.
	classThrottled
	// classTransient: worth retrying: the SMSC's own trouble, or codes
	// outside SMPP 3.4 (vendor codes), which are retried a bounded number
	// of times rather than failing a message on a code we cannot read.
	classTransient
	// classPermanent: every other code SMPP 3.4 defines: the message or
	// our request is wrong, and sending it again gets the same answer.
	classPermanent
)

// transientStatuses are the SMPP 3.4 codes that say "not now" rather
// than "never".
var transientStatuses = map[data.CommandStatusType]bool{
	data.ESME_RINVBNDSTS:  true, // our bind's state at the SMSC; another bind or a rebind helps
	data.ESME_RSYSERR:     true,
	data.ESME_RSUBMITFAIL: true, // unspecified; many SMSCs use it for transient trouble
	data.ESME_RX_T_APPN:   true,
}

func classify(st data.CommandStatusType) statusClass {
	switch {
	case st == data.ESME_ROK:
		return classAccepted
	case st == data.ESME_RTHROTTLED || st == data.ESME_RMSGQFUL:
		return classThrottled
	case transientStatuses[st] || !statusDefined(st):
		return classTransient
	}
	return classPermanent
}

// credentialsRefused reports a bind refusal that waiting will not cure
// soon: the SMSC does not accept our system_id or password.
func credentialsRefused(st data.CommandStatusType) bool {
	return st == data.ESME_RINVPASWD || st == data.ESME_RINVSYSID || st == data.ESME_RBINDFAIL
}
