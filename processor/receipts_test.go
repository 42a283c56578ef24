package processor

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/smsctl/smsctl/platform/platformtest"
	"github.com/smsctl/smsctl/processor/carrier"
	"github.com/smsctl/smsctl/sms"
	"github.com/smsctl/smsctl/sms/client"
)

// sentWithParts is a SENT outcome whose carrier gave these part ids and
// will send receipts.
func sentWithParts(id uuid.UUID, parts ...string) Outcome {
	o := sentOutcome(id, time.Now().UTC().Add(-time.Minute).Truncate(time.Microsecond))
	o.Parts, o.ReceiptsExpected = parts, true
	o.CarrierMessageID = &parts[0]
	return o
}

func receipt(id string, st sms.Status) carrier.Receipt {
	return carrier.Receipt{CarrierID: id, Status: st, State: "X", DoneAt: time.Now().UTC().Truncate(time.Microsecond)}
}

// finalStatus reads what a try's receipts came to ("" while unsettled).
func finalStatus(tb testing.TB, s *Store, id uuid.UUID) sms.Status {
	tb.Helper()
	var st *string
	if err := s.db.Get(&st, `SELECT final_status FROM processor.deliveries WHERE message_id = $1 AND retry = 0`, id); err != nil {
		tb.Fatal(err)
	}
	if st == nil {
		return ""
	}
	return sms.Status(*st)
}

// TestStoreReceipts checks how receipts settle a message: matched to its
// parts whatever base the SMSC writes the id in, one receipt per part,
// DELIVERED only when every part is, UNDELIVERED as soon as one part is,
// EXPIRED when a part expired; receipts that come before the submit's
// answer is recorded are kept and matched later; a repeated receipt
// changes nothing.
func TestStoreReceipts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		parts    []string
		early    []carrier.Receipt // before the outcome is recorded
		receipts []carrier.Receipt
		want     sms.Status
	}{
		{name: "one part delivered", parts: []string{"1A2B"}, receipts: []carrier.Receipt{receipt("1A2B", sms.StatusDelivered)}, want: sms.StatusDelivered},
		{name: "hex in the answer, decimal in the receipt", parts: []string{"1A2B"}, receipts: []carrier.Receipt{receipt("6699", sms.StatusDelivered)}, want: sms.StatusDelivered},
		{name: "decimal in the answer, hex in the receipt", parts: []string{"6699"}, receipts: []carrier.Receipt{receipt("1a2b", sms.StatusDelivered)}, want: sms.StatusDelivered},
		{name: "two parts, one receipt: not settled", parts: []string{"A1", "A2"}, receipts: []carrier.Receipt{receipt("A1", sms.StatusDelivered)}, want: ""},
		{name: "two parts delivered", parts: []string{"B1", "B2"}, receipts: []carrier.Receipt{receipt("B1", sms.StatusDelivered), receipt("B2", sms.StatusDelivered)}, want: sms.StatusDelivered},
		{name: "one part undelivered settles at once", parts: []string{"C1", "C2", "C3"}, receipts: []carrier.Receipt{receipt("C2", sms.StatusUndelivered)}, want: sms.StatusUndelivered},
		{name: "a part expired", parts: []string{"D1", "D2"}, receipts: []carrier.Receipt{receipt("D1", sms.StatusDelivered), receipt("D2", sms.StatusExpired)}, want: sms.StatusExpired},
		{name: "the receipt came before the answer", parts: []string{"E1"}, early: []carrier.Receipt{receipt("E1", sms.StatusDelivered)}, want: sms.StatusDelivered},
		{name: "a repeated receipt counts once", parts: []string{"F1", "F2"}, receipts: []carrier.Receipt{receipt("F1", sms.StatusDelivered), receipt("F1", sms.StatusDelivered)}, want: ""},
		{name: "the first final receipt of a part counts", parts: []string{"G1"}, receipts: []carrier.Receipt{receipt("G1", sms.StatusDelivered), receipt("G1", sms.StatusUndelivered)}, want: sms.StatusDelivered},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			store := NewStore(platformtest.NewDB(t))
			ctx := context.Background()
			if len(tc.early) > 0 {
				if err := store.RecordReceipts(ctx, tc.early); err != nil {
					t.Fatal(err)
				}
			}
			id := uuid.New()
			if _, err := store.Record(ctx, []Outcome{sentWithParts(id, tc.parts...)}); err != nil {
				t.Fatal(err)
			}
			for _, r := range tc.receipts {
				if err := store.RecordReceipts(ctx, []carrier.Receipt{r}); err != nil {
					t.Fatal(err)
				}
			}
			if got := finalStatus(t, store, id); got != tc.want {
				t.Errorf("receipts came to %q, want %q", got, tc.want)
			}
			var receiptReports int
			if err := store.db.Get(&receiptReports, `SELECT count(*) FROM processor.unreported WHERE kind = 'receipt'`); err != nil {
				t.Fatal(err)
			}
			if want := map[bool]int{true: 1, false: 0}[tc.want != ""]; receiptReports != want {
				t.Errorf("%d receipt reports queued, want %d", receiptReports, want)
			}
		})
	}
}

// TestStoreLosingOutcomeLeavesNoParts checks that when two replicas
// record a SENT outcome for one try, each with the carrier ids its own
// submit got, only the winner's parts are stored: the loser's would be
// counted as parts of the winner's try, which its receipts alone could
// then never settle.
func TestStoreLosingOutcomeLeavesNoParts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		batches func(id uuid.UUID) [][]Outcome
	}{
		{name: "the loser records later, beside a new outcome", batches: func(id uuid.UUID) [][]Outcome {
			return [][]Outcome{{sentWithParts(id, "W1")}, {sentWithParts(id, "L1"), sentWithParts(uuid.New(), "N1")}}
		}},
		{name: "both in one batch", batches: func(id uuid.UUID) [][]Outcome {
			return [][]Outcome{{sentWithParts(id, "W1"), sentWithParts(id, "L1")}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			store := NewStore(platformtest.NewDB(t))
			ctx := context.Background()
			id := uuid.New()
			for i, b := range tc.batches(id) {
				if _, err := store.Record(ctx, b); err != nil {
					t.Fatalf("Record batch %d: %v", i, err)
				}
			}
			var parts []string
			if err := store.db.Select(&parts, `SELECT carrier_id FROM processor.carrier_parts WHERE message_id = $1 ORDER BY carrier_id`, id); err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(parts) != "[W1]" {
				t.Errorf("parts stored for the try: %v, want only the winner's [W1]", parts)
			}
			if err := store.RecordReceipts(ctx, []carrier.Receipt{receipt("W1", sms.StatusDelivered)}); err != nil {
				t.Fatal(err)
			}
			if got := finalStatus(t, store, id); got != sms.StatusDelivered {
				t.Errorf("the winner's only receipt came to %q, want DELIVERED", got)
			}
		})
	}
}

// TestStoreReceiptReportWaitsForOutcome checks that a message's receipt
// is reported only after its outcome: the API would ignore DELIVERED for
// a message it still has as PENDING.
func TestStoreReceiptReportWaitsForOutcome(t *testing.T) {
	t.Parallel()
	store := NewStore(platformtest.NewDB(t))
	ctx := context.Background()
	id := uuid.New()
	if _, err := store.Record(ctx, []Outcome{sentWithParts(id, "77")}); err != nil {
		t.Fatal(err)
	}
	if err := store.RecordReceipts(ctx, []carrier.Receipt{receipt("77", sms.StatusDelivered)}); err != nil {
		t.Fatal(err)
	}
	var order []string
	report := func(outs []Outcome) error {
		for _, o := range outs {
			order = append(order, fmt.Sprintf("%s:%s", o.Kind, o.Status))
			if o.Kind == kindReceipt && (len(o.PartReceipts) != 1 || o.PartReceipts[0].CarrierID != "77") {
				t.Errorf("receipt report without its part: %+v", o.PartReceipts)
			}
		}
		return nil
	}
	// Both are due, but only the outcome may go first.
	if n, err := store.ReportBatch(ctx, 10, 0, report); err != nil || n != 1 {
		t.Fatalf("first batch: %d, %v; want the outcome alone", n, err)
	}
	if n, err := store.ReportBatch(ctx, 10, 0, report); err != nil || n != 1 {
		t.Fatalf("second batch: %d, %v; want the receipt", n, err)
	}
	if fmt.Sprint(order) != "[outcome:SENT receipt:DELIVERED]" {
		t.Errorf("reported %v", order)
	}
}

// TestStoreExpireUnreceipted checks the receipt timeout: a SENT message
// whose receipts did not all come in time is settled EXPIRED, once.
func TestStoreExpireUnreceipted(t *testing.T) {
	t.Parallel()
	store := NewStore(platformtest.NewDB(t))
	ctx := context.Background()
	old, fresh, settled := uuid.New(), uuid.New(), uuid.New()
	outs := []Outcome{sentWithParts(old, "H1", "H2"), sentWithParts(fresh, "I1"), sentWithParts(settled, "J1")}
	outs[1].ProcessedAt = time.Now().UTC()
	if _, err := store.Record(ctx, outs); err != nil {
		t.Fatal(err)
	}
	if err := store.RecordReceipts(ctx, []carrier.Receipt{receipt("H1", sms.StatusDelivered), receipt("J1", sms.StatusDelivered)}); err != nil {
		t.Fatal(err)
	}
	n, err := store.ExpireUnreceipted(ctx, 30*time.Second, 100)
	if err != nil || n != 1 {
		t.Fatalf("ExpireUnreceipted = %d, %v; want 1", n, err)
	}
	for id, want := range map[uuid.UUID]sms.Status{old: sms.StatusExpired, fresh: "", settled: sms.StatusDelivered} {
		if got := finalStatus(t, store, id); got != want {
			t.Errorf("%s came to %q, want %q", id, got, want)
		}
	}
	if n, _ := store.ExpireUnreceipted(ctx, 30*time.Second, 100); n != 0 {
		t.Errorf("a second round expired %d more", n)
	}
}

// TestReceiverInboundRefusedForGood checks that an inbound message the API
// refuses as invalid is acknowledged (dropped, counted) rather than handed
// back to the SMSC to resend forever, while one it could not take now is
// handed back.
func TestReceiverInboundRefusedForGood(t *testing.T) {
	t.Parallel()
	var status atomic.Int64
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(int(status.Load()))
		fmt.Fprintf(w, `{"type":"about:blank","title":"x","status":%d,"detail":"text: required"}`, status.Load())
	}))
	defer api.Close()
	reg := prometheus.NewRegistry()
	r := NewReceiver(nil, nil, client.NewInternal(api.URL, testToken, 5*time.Second), zerolog.Nop(), reg)
	in := carrier.Inbound{From: "+14155552671", To: "+14155550100", Text: "", CarrierID: "c1", ReceivedAt: time.Now()}

	for _, c := range []struct {
		status   int
		handBack bool
	}{{400, false}, {422, false}, {503, true}, {429, true}, {401, true}} {
		status.Store(int64(c.status))
		err := r.Inbound(t.Context(), in)
		if (err != nil) != c.handBack {
			t.Errorf("API answering %d: Inbound returned %v; want an error (the SMSC keeps it): %v", c.status, err, c.handBack)
		}
	}
	if got := testutil.ToFloat64(r.inbounds.WithLabelValues("refused")); got != 2 {
		t.Errorf("sms_inbound_total{result=refused} = %v, want 2", got)
	}
}

// TestStoreReceiptRacesOutcome records each receipt at the same time as
// its message's outcome, from two transactions: whichever commits first,
// the receipt must end up matched and the message settled (a receipt
// stored unmatched while the parts were being stored, and parts that
// looked for receipts while the receipt was being stored, would otherwise
// miss each other for good).
func TestStoreReceiptRacesOutcome(t *testing.T) {
	t.Parallel()
	db := platformtest.NewDB(t)
	db.SetMaxOpenConns(16)
	store := NewStore(db)
	ctx := context.Background()
	const n = 300
	ids := make([]uuid.UUID, n)
	var wg sync.WaitGroup
	for i := range ids {
		ids[i] = uuid.New()
		part := fmt.Sprintf("R%04X", i)
		rec := receipt(part, sms.StatusDelivered)
		if i%2 == 0 { // the other base: matched through the alternative form
			rec.CarrierID = fmt.Sprintf("%d", 0xA0000+i)
			part = fmt.Sprintf("%X", 0xA0000+i)
		}
		wg.Go(func() {
			if _, err := store.Record(ctx, []Outcome{sentWithParts(ids[i], part)}); err != nil {
				t.Error(err)
			}
		})
		wg.Go(func() {
			if err := store.RecordReceipts(ctx, []carrier.Receipt{rec}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	unsettled := 0
	for _, id := range ids {
		if finalStatus(t, store, id) != sms.StatusDelivered {
			unsettled++
		}
	}
	if unsettled > 0 {
		t.Errorf("%d of %d messages unsettled after their receipt and outcome were recorded at once", unsettled, n)
	}
}
