package smpp

import (
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/linxGnu/gosmpp/pdu"

	"github.com/smsctl/smsctl/sms"
)

// receiptKey finds the keys of a receipt text (SMPP 3.4 Appendix B, as
// SMSCs actually write it: any case, "submit_date" for "submit date").
var receiptKey = regexp.MustCompile(`(?i)\b(id|sub|dlvrd|submit[ _]?date|done[ _]?date|stat|err|text)\s*:`)

// receiptInfo is what a delivery receipt says of one part.
type receiptInfo struct {
	ID     string
	State  string    // DELIVRD, UNDELIV, ... as the SMSC wrote it, upper case
	Err    string    // the SMSC's error code, as written
	DoneAt time.Time // zero when the receipt does not say
}

// parseReceiptText reads "id:... sub:... dlvrd:... submit date:...
// done date:... stat:... err:... text:...". Missing fields stay empty;
// everything from "text:" on is ignored (it carries the message's first
// characters in whatever bytes the SMSC chose).
func parseReceiptText(s string) receiptInfo {
	var r receiptInfo
	keys := receiptKey.FindAllStringSubmatchIndex(s, -1)
	for i, k := range keys {
		key := strings.ToLower(strings.NewReplacer(" ", "", "_", "").Replace(s[k[2]:k[3]]))
		if key == "text" {
			break
		}
		end := len(s)
		if i+1 < len(keys) {
			end = keys[i+1][0]
		}
		value := strings.TrimSpace(s[k[1]:end])
		switch key {
		case "id":
			r.ID = firstField(value)
		case "stat":
			r.State = strings.ToUpper(firstField(value))
		case "err":
			r.Err = firstField(value)
		case "donedate":
			r.DoneAt = parseReceiptDate(firstField(value))
		}
	}
	return r
}

func firstField(s string) string {
	if f := strings.Fields(s); len(f) > 0 {
		return f[0]
	}
	return ""
}

// parseReceiptDate reads YYMMDDhhmm or YYMMDDhhmmss. The SMSC's time zone
// is not written down; it is taken for UTC.
func parseReceiptDate(s string) time.Time {
	layouts := map[int]string{10: "0601021504", 12: "060102150405"}
	layout, ok := layouts[len(s)]
	if !ok {
		return time.Time{}
	}
	t, err := time.Parse(layout, s)
	if err != nil {
		return time.Time{}
	}
	return t
}

// messageStates names the message_state TLV's values (SMPP 3.4 5.3.2.35)
// in the receipt text's words.
var messageStates = map[byte]string{
	1: "ENROUTE", 2: "DELIVRD", 3: "EXPIRED", 4: "DELETED",
	5: "UNDELIV", 6: "ACCEPTD", 7: "UNKNOWN", 8: "REJECTD",
}

// tagMessageState is message_state (0x0427); gosmpp names it
// TagMessageStateOption.
const tagMessageState = pdu.Tag(0x0427)

// parseReceipt reads a receipt deliver_sm: its text, then the TLVs
// receipted_message_id, message_state and network_error_code, which win
// over the text when present.
func parseReceipt(d *pdu.DeliverSM, text string) receiptInfo {
	r := parseReceiptText(text)
	if f, ok := d.OptionalParameters[pdu.TagReceiptedMessageID]; ok {
		if id := strings.TrimSpace(f.String()); id != "" {
			r.ID = id
		}
	}
	if f, ok := d.OptionalParameters[tagMessageState]; ok && len(f.Data) == 1 {
		if st, ok := messageStates[f.Data[0]]; ok {
			r.State = st
		}
	}
	if f, ok := d.OptionalParameters[pdu.TagNetworkErrorCode]; ok && len(f.Data) == 3 && r.Err == "" {
		r.Err = strconv.Itoa(int(f.Data[1])<<8 | int(f.Data[2]))
	}
	return r
}

// receiptStatus maps a receipt's state to the message's status; final is
// false for states that are not (ENROUTE, ACCEPTD) and for unknown words.
func receiptStatus(state string) (status sms.Status, final bool) {
	switch state {
	case "DELIVRD", "DELIVERED":
		return sms.StatusDelivered, true
	case "UNDELIV", "UNDELIVERABLE", "REJECTD", "REJECTED", "DELETED", "UNKNOWN":
		return sms.StatusUndelivered, true
	case "EXPIRED":
		return sms.StatusExpired, true
	}
	return "", false
}
