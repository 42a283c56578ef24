package smpp

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/linxGnu/gosmpp/data"
	"github.com/linxGnu/gosmpp/pdu"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/smsctl/smsctl/processor/carrier"
	"github.com/smsctl/smsctl/sms"
)

// receiptPDU is a receipt deliver_sm as an SMSC sends it.
func receiptPDU(t testing.TB, text string, tlvs ...pdu.Field) *pdu.DeliverSM {
	t.Helper()
	d := pdu.NewDeliverSM().(*pdu.DeliverSM)
	d.EsmClass = 0x04
	d.SourceAddr, _ = pdu.NewAddressWithTonNpiAddr(1, 1, "447700900001")
	if err := d.Message.SetMessageDataWithEncoding([]byte(text), data.LATIN1); err != nil {
		t.Fatal(err)
	}
	for _, f := range tlvs {
		d.RegisterOptionalParam(f)
	}
	return d
}

// deliverResp waits for the carrier's deliver_sm_resp to d.
func (f *fakeSMSC) deliverResp(t testing.TB, d pdu.PDU) *pdu.DeliverSMResp {
	t.Helper()
	for {
		p := recv(t, f.responses, "deliver_sm_resp")
		if r, ok := p.(*pdu.DeliverSMResp); ok {
			if r.SequenceNumber != d.GetSequenceNumber() {
				t.Fatalf("deliver_sm_resp for sequence %d, want %d", r.SequenceNumber, d.GetSequenceNumber())
			}
			return r
		}
	}
}

func TestReceipts(t *testing.T) {
	t.Parallel()
	f := newFakeSMSC(t)
	c := startCarrier(t, testConfig(f.addr()), nil)
	c.waitReady(t)
	doneAt := time.Date(2024, 1, 2, 15, 30, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		d    *pdu.DeliverSM
		want carrier.Receipt
	}{
		{"text, delivered", receiptPDU(t, "id:Smsc2001 sub:1 dlvrd:1 submit date:2401021529 done date:2401021530 stat:DELIVRD err:0 text:hello"),
			carrier.Receipt{CarrierID: "SMSC2001", Status: sms.StatusDelivered, State: "DELIVRD", Err: "0", DoneAt: doneAt}},
		{"text, lowercase, leading zeros", receiptPDU(t, "id:000a1b sub:001 dlvrd:000 submit date:2401021529 done date:2401021530 stat:undeliv err:001 text:"),
			carrier.Receipt{CarrierID: "A1B", Status: sms.StatusUndelivered, State: "UNDELIV", Err: "001", DoneAt: doneAt}},
		{"text, rejected", receiptPDU(t, "id:77 stat:REJECTD err:1"),
			carrier.Receipt{CarrierID: "77", Status: sms.StatusUndelivered, State: "REJECTD", Err: "1"}},
		{"text, expired", receiptPDU(t, "id:78 done date:2401021530 stat:EXPIRED"),
			carrier.Receipt{CarrierID: "78", Status: sms.StatusExpired, State: "EXPIRED", DoneAt: doneAt}},
		{"TLVs win", receiptPDU(t, "id:6699 stat:DELIVRD",
			pdu.Field{Tag: pdu.TagReceiptedMessageID, Data: []byte("1a2b\x00")}, pdu.Field{Tag: tagMessageState, Data: []byte{3}}),
			carrier.Receipt{CarrierID: "1A2B", Status: sms.StatusExpired, State: "EXPIRED"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := time.Now().UTC()
			f.deliver(tc.d)
			got := recv(t, c.sink.receipts, "receipt")
			if r := f.deliverResp(t, tc.d); r.CommandStatus != data.ESME_ROK {
				t.Errorf("deliver_sm_resp status %v, want ESME_ROK", r.CommandStatus)
			}
			if tc.want.DoneAt.IsZero() {
				// Not in the receipt: when it arrived.
				if got.DoneAt.Before(before) || got.DoneAt.After(time.Now()) {
					t.Errorf("DoneAt %v, want the arrival time", got.DoneAt)
				}
				tc.want.DoneAt = got.DoneAt
			}
			if got != tc.want {
				t.Errorf("receipt %+v\nwant    %+v", got, tc.want)
			}
		})
	}
	if got := testutil.ToFloat64(c.m.receipts.WithLabelValues("1", "UNDELIVERED")); got != 2 {
		t.Errorf("sms_smpp_receipts_total{status=UNDELIVERED} = %v, want 2", got)
	}
}

// TestReceiptNotFinal checks that ENROUTE is acknowledged without reaching
// the sink, and that a receipt without an id is refused for good.
func TestReceiptNotFinal(t *testing.T) {
	t.Parallel()
	f := newFakeSMSC(t)
	c := startCarrier(t, testConfig(f.addr()), nil)
	c.waitReady(t)
	for _, tc := range []struct {
		text   string
		status data.CommandStatusType
	}{
		{"id:1 stat:ENROUTE", data.ESME_ROK},
		{"id:2 stat:ACCEPTD", data.ESME_ROK},
		{"stat:DELIVRD err:0", data.ESME_RX_P_APPN},
	} {
		d := receiptPDU(t, tc.text)
		f.deliver(d)
		if r := f.deliverResp(t, d); r.CommandStatus != tc.status {
			t.Errorf("%q answered %v, want %v", tc.text, r.CommandStatus, tc.status)
		}
	}
	// Receipts are handled in order: once this one is in, the others were
	// not handed over.
	d := receiptPDU(t, "id:3 stat:DELIVRD")
	f.deliver(d)
	if got := recv(t, c.sink.receipts, "receipt"); got.CarrierID != "3" {
		t.Errorf("the sink got %+v, want only receipt 3", got)
	}
	f.deliverResp(t, d)
}

// TestReceiptBeforeResponse checks that a receipt overtaking its
// submit_sm_resp reaches the sink, and the Submit still gets its id.
func TestReceiptBeforeResponse(t *testing.T) {
	t.Parallel()
	f := newFakeSMSC(t)
	f.setHandler(func(*pdu.SubmitSM) reply {
		return reply{id: "fast1", before: func(id string) pdu.PDU { return receiptPDU(t, "id:"+id+" stat:DELIVRD err:0") }}
	})
	c := startCarrier(t, testConfig(f.addr()), nil)
	c.waitReady(t)
	acc, err := c.Submit(context.Background(), request("+447700900001", "hi"), 1)
	if err != nil {
		t.Fatal(err)
	}
	r := recv(t, c.sink.receipts, "receipt")
	if len(acc.PartIDs) != 1 || acc.PartIDs[0] != "FAST1" || r.CarrierID != "FAST1" || r.Status != sms.StatusDelivered {
		t.Errorf("accepted %v, receipt %+v: want both FAST1", acc.PartIDs, r)
	}
}

// TestSinkFailure checks that a receipt the sink refuses is answered
// ESME_RX_T_APPN, so that the SMSC sends it again, and taken then.
func TestSinkFailure(t *testing.T) {
	t.Parallel()
	f := newFakeSMSC(t)
	c := startCarrier(t, testConfig(f.addr()), nil)
	c.waitReady(t)
	c.sink.setFail(errors.New("api down"))
	d := receiptPDU(t, "id:9 stat:DELIVRD")
	f.deliver(d)
	if r := f.deliverResp(t, d); r.CommandStatus != data.ESME_RX_T_APPN {
		t.Errorf("answered %v, want ESME_RX_T_APPN", r.CommandStatus)
	}
	in := inboundPDU(t, "447700900123", "12345", 0, []byte("STOP"))
	f.deliver(in)
	if r := f.deliverResp(t, in); r.CommandStatus != data.ESME_RX_T_APPN {
		t.Errorf("inbound answered %v, want ESME_RX_T_APPN", r.CommandStatus)
	}
	c.sink.setFail(nil)
	d.AssignSequenceNumber()
	f.deliver(d)
	if r := f.deliverResp(t, d); r.CommandStatus != data.ESME_ROK {
		t.Errorf("sent again, answered %v, want ESME_ROK", r.CommandStatus)
	}
	if got := recv(t, c.sink.receipts, "receipt"); got.CarrierID != "9" {
		t.Errorf("receipt %+v", got)
	}
}

// inboundPDU is a mobile-originated deliver_sm.
func inboundPDU(t testing.TB, from, to string, coding byte, octets []byte, udh ...pdu.InfoElement) *pdu.DeliverSM {
	t.Helper()
	d := pdu.NewDeliverSM().(*pdu.DeliverSM)
	d.SourceAddr, _ = pdu.NewAddressWithTonNpiAddr(1, 1, from)
	d.DestAddr, _ = pdu.NewAddressWithTonNpiAddr(0, 1, to)
	if err := d.Message.SetMessageDataWithEncoding(octets, data.FromDataCoding(coding)); err != nil {
		t.Fatal(err)
	}
	if len(udh) > 0 {
		d.Message.SetUDH(pdu.UDH(udh))
		d.EsmClass |= 0x40
	}
	return d
}

func TestInbound(t *testing.T) {
	t.Parallel()
	f := newFakeSMSC(t)
	c := startCarrier(t, testConfig(f.addr()), nil)
	c.waitReady(t)
	for _, tc := range []struct {
		name   string
		coding byte
		octets []byte
		want   string
	}{
		{"gsm-7 unpacked with escapes", 0x00, []byte{0x48, 0x69, 0x20, 0x1B, 0x65, 0x1B, 0x3C, 0x00, 0x02}, "Hi €[@$"},
		{"ucs-2 with an emoji", 0x08, []byte{0x04, 0x1F, 0x04, 0x40, 0x00, 0x20, 0xD8, 0x3D, 0xDE, 0x00}, "Пр 😀"},
		{"latin-1", 0x03, []byte("caf\xe9"), "café"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := inboundPDU(t, "447700900123", "12345", tc.coding, tc.octets)
			f.deliver(d)
			got := recv(t, c.sink.inbound, "inbound")
			if r := f.deliverResp(t, d); r.CommandStatus != data.ESME_ROK {
				t.Errorf("answered %v", r.CommandStatus)
			}
			if got.Text != tc.want || got.From != "+447700900123" || got.To != "12345" || got.CarrierID == "" || got.ReceivedAt.IsZero() {
				t.Errorf("inbound %+v, want text %q from +447700900123 to 12345 with an id", got, tc.want)
			}
		})
	}
}

// TestInboundID checks that the same deliver_sm sent twice gives the same
// id, and a second message with the same text another one.
func TestInboundID(t *testing.T) {
	t.Parallel()
	f := newFakeSMSC(t)
	c := startCarrier(t, testConfig(f.addr()), nil)
	c.waitReady(t)
	d := inboundPDU(t, "447700900123", "12345", 0, []byte("YES"))
	var ids []string
	for _, seq := range []int32{d.SequenceNumber, d.SequenceNumber, d.SequenceNumber + 1} {
		d.SequenceNumber = seq
		f.deliver(d)
		ids = append(ids, recv(t, c.sink.inbound, "inbound").CarrierID)
		f.deliverResp(t, d)
	}
	if ids[0] != ids[1] || ids[0] == ids[2] {
		t.Errorf("ids %v: want the first two equal (the same deliver_sm again), the third apart", ids)
	}
}

// TestInboundConcatenated checks that parts arriving in any order, with an
// 8-bit or 16-bit reference, make one message, handed over once complete.
func TestInboundConcatenated(t *testing.T) {
	t.Parallel()
	f := newFakeSMSC(t)
	c := startCarrier(t, testConfig(f.addr()), nil)
	c.waitReady(t)
	ref8 := func(part byte) pdu.InfoElement { return pdu.NewIEConcatMessage(3, part, 0x42) }
	ref16 := func(part byte) pdu.InfoElement {
		return pdu.InfoElement{ID: data.UDH_CONCAT_MSG_16_BIT_REF, Data: []byte{0x12, 0x34, 3, part}}
	}
	// UCS-2 with a surrogate pair cut between parts 1 and 2, and GSM with
	// an escape cut between parts 2 and 3.
	for _, tc := range []struct {
		name   string
		coding byte
		parts  [][]byte
		ie     func(byte) pdu.InfoElement
		want   string
	}{
		{"gsm-7, 8-bit reference", 0x00, [][]byte{[]byte("Hello, "), {0x77, 0x6F, 0x72, 0x1B}, {0x65, 0x21}}, ref8, "Hello, wor€!"},
		{"ucs-2, 16-bit reference", 0x08, [][]byte{{0x00, 0x61, 0xD8, 0x3D}, {0xDE, 0x00, 0x00, 0x62}, {0x00, 0x63}}, ref16, "a😀bc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, i := range []int{2, 0, 1} {
				d := inboundPDU(t, "447700900123", "12345", tc.coding, tc.parts[i], tc.ie(byte(i+1)))
				f.deliver(d)
				if r := f.deliverResp(t, d); r.CommandStatus != data.ESME_ROK {
					t.Errorf("part %d answered %v", i+1, r.CommandStatus)
				}
			}
			got := recv(t, c.sink.inbound, "inbound")
			if got.Text != tc.want || got.From != "+447700900123" || got.To != "12345" {
				t.Errorf("inbound %+v, want %q", got, tc.want)
			}
			if len(c.sink.inbound) != 0 {
				t.Errorf("%d more inbound messages handed over", len(c.sink.inbound))
			}
		})
	}
}

func TestReassemblerExpires(t *testing.T) {
	r := newReassembler(time.Minute)
	start := time.Now()
	key := partKey{from: "a", to: "b", ref: 1, total: 2}
	if _, st, _ := r.add(key, 1, []byte("x"), 0, 1, start); st != partBuffered {
		t.Fatalf("first part: %v", st)
	}
	other := partKey{from: "a", to: "b", ref: 2, total: 2}
	if _, _, dropped := r.add(other, 1, []byte("y"), 0, 2, start.Add(2*time.Minute)); dropped != 1 {
		t.Errorf("dropped %d incomplete messages, want 1", dropped)
	}
	if _, st, _ := r.add(key, 2, []byte("z"), 0, 3, start.Add(2*time.Minute)); st == partComplete {
		t.Error("a message completed from a part that had expired")
	}
}
