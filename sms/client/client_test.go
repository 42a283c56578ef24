package client

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/smsctl/smsctl/sms"
)

// TestClientWaitKeepsLastLook: when the deadline cuts off a look, Wait
// returns the message as the last look before it found it, not an empty
// one (send --wait printed "still  after 60s").
func TestClientWaitKeepsLastLook(t *testing.T) {
	t.Parallel()
	id := uuid.New()
	var looks atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if looks.Add(1) > 1 { // every look after the first hangs past the deadline
			<-r.Context().Done()
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":%q,"status":"PENDING"}`, id)
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	m, err := New(srv.URL, "key").Wait(ctx, id, 10*time.Millisecond)
	if err == nil {
		t.Fatal("Wait returned no error at its deadline")
	}
	if m.Status != sms.StatusPending || m.ID != id {
		t.Errorf("Wait returned %+v, want the PENDING message the first look found", m)
	}
}
