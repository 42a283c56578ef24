package smpp

import (
	"testing"
	"time"

	"github.com/linxGnu/gosmpp/pdu"

	"github.com/smsctl/smsctl/sms"
)

func TestParseReceiptText(t *testing.T) {
	at := func(s string) time.Time {
		t.Helper()
		v, err := time.Parse("2006-01-02 15:04:05", s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, tc := range []struct {
		name, text string
		want       receiptInfo
	}{
		{"the simulator's", "id:Smsc2001 sub:1 dlvrd:1 submit date:2612032020 done date:2612032020 stat:DELIVRD err:0 text:hello from smsctl pr",
			receiptInfo{ID: "Smsc2001", State: "DELIVRD", Err: "0", DoneAt: at("2026-12-03 20:20:00")}},
		{"SMPP 3.4 appendix B", "id:0123456789 sub:001 dlvrd:001 submit date:0610190210 done date:0610190211 stat:DELIVRD err:000 text:Hello",
			receiptInfo{ID: "0123456789", State: "DELIVRD", Err: "000", DoneAt: at("2006-10-19 02:11:00")}},
		{"lowercase, empty text", "id:abc123 sub:001 dlvrd:000 submit date:2301011200 done date:2301011201 stat:UNDELIV err:001 text:",
			receiptInfo{ID: "abc123", State: "UNDELIV", Err: "001", DoneAt: at("2023-01-01 12:01:00")}},
		{"capitalized keys, lowercase state", "ID:5d0f Sub:001 Dlvrd:001 Submit Date:1901011200 Done Date:1901011200 Stat:delivrd Err:000 Text:hi",
			receiptInfo{ID: "5d0f", State: "DELIVRD", Err: "000", DoneAt: at("2019-01-01 12:00:00")}},
		{"missing fields", "id:77 stat:EXPIRED", receiptInfo{ID: "77", State: "EXPIRED"}},
		{"underscores and seconds", "id:1a2b3c submit_date:200102030405 done_date:200102030406 stat:REJECTD err:0x0B",
			receiptInfo{ID: "1a2b3c", State: "REJECTD", Err: "0x0B", DoneAt: at("2020-01-02 03:04:06")}},
		{"keys inside the text are ignored", "id:42 sub:1 dlvrd:1 stat:DELIVRD err:0 text:stat:UNDELIV id:99",
			receiptInfo{ID: "42", State: "DELIVRD", Err: "0"}},
		{"leading zeros kept here", "id:0000FFAB stat:DELIVRD", receiptInfo{ID: "0000FFAB", State: "DELIVRD"}},
		{"spaces after colons", "id: 12345  sub:1 dlvrd:1 submit date:2401010000 done date: 2401010001 stat: DELIVRD err: 0",
			receiptInfo{ID: "12345", State: "DELIVRD", Err: "0", DoneAt: at("2024-01-01 00:01:00")}},
		{"bad date", "id:9 done date:99999 stat:DELIVRD", receiptInfo{ID: "9", State: "DELIVRD"}},
		{"not a receipt", "hello there", receiptInfo{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := parseReceiptText(tc.text); got != tc.want {
				t.Errorf("parseReceiptText = %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// TestParseReceiptTLVs checks that receipted_message_id and message_state
// win over the text, and network_error_code fills a missing err.
func TestParseReceiptTLVs(t *testing.T) {
	d := pdu.NewDeliverSM().(*pdu.DeliverSM)
	d.RegisterOptionalParam(pdu.Field{Tag: pdu.TagReceiptedMessageID, Data: []byte("1A2B\x00")})
	d.RegisterOptionalParam(pdu.Field{Tag: tagMessageState, Data: []byte{5}})
	d.RegisterOptionalParam(pdu.Field{Tag: pdu.TagNetworkErrorCode, Data: []byte{3, 0x01, 0x02}})
	got := parseReceipt(d, "id:6699 sub:1 dlvrd:1 stat:DELIVRD text:x")
	want := receiptInfo{ID: "1A2B", State: "UNDELIV", Err: "258"}
	if got != want {
		t.Errorf("parseReceipt = %+v, want %+v", got, want)
	}
	// The TLVs alone make a receipt.
	d = pdu.NewDeliverSM().(*pdu.DeliverSM)
	d.RegisterOptionalParam(pdu.Field{Tag: pdu.TagReceiptedMessageID, Data: []byte("77\x00")})
	d.RegisterOptionalParam(pdu.Field{Tag: tagMessageState, Data: []byte{2}})
	if got := parseReceipt(d, ""); got.ID != "77" || got.State != "DELIVRD" {
		t.Errorf("TLV-only receipt read as %+v", got)
	}
}

func TestReceiptStatus(t *testing.T) {
	for _, tc := range []struct {
		state  string
		status sms.Status
		final  bool
	}{
		{"DELIVRD", sms.StatusDelivered, true},
		{"UNDELIV", sms.StatusUndelivered, true},
		{"REJECTD", sms.StatusUndelivered, true},
		{"DELETED", sms.StatusUndelivered, true},
		{"UNKNOWN", sms.StatusUndelivered, true},
		{"EXPIRED", sms.StatusExpired, true},
		{"ENROUTE", "", false},
		{"ACCEPTD", "", false},
		{"SOMETHING", "", false},
	} {
		status, final := receiptStatus(tc.state)
		if status != tc.status || final != tc.final {
			t.Errorf("receiptStatus(%s) = %s, %v; want %s, %v", tc.state, status, final, tc.status, tc.final)
		}
	}
	// The message_state values read as these words.
	for v, word := range map[byte]string{1: "ENROUTE", 2: "DELIVRD", 3: "EXPIRED", 4: "DELETED", 5: "UNDELIV", 6: "ACCEPTD", 7: "UNKNOWN", 8: "REJECTD"} {
		if messageStates[v] != word {
			t.Errorf("message_state %d reads %q, want %q", v, messageStates[v], word)
		}
	}
}
