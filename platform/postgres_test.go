package platform

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/lib/pq"
)

func TestIsUnavailable(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want bool
	}{
		{&net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, true},
		{fmt.Errorf("insert batch: %w", io.ErrUnexpectedEOF), true}, // lib/pq when the server goes away mid-read
		{fmt.Errorf("write: %w", syscall.EPIPE), true},
		{fmt.Errorf("query: %w", driver.ErrBadConn), true},
		{&pq.Error{Code: "57P01"}, true}, // admin_shutdown
		{errPoolClosed, true},
		{&pq.Error{Code: "42P01"}, false},         // undefined_table
		{errors.New("connection refused"), false}, // text alone proves nothing
		{context.Canceled, false},
	} {
		if got := IsUnavailable(tt.err); got != tt.want {
			t.Errorf("IsUnavailable(%q) = %v, want %v", tt.err, got, tt.want)
		}
	}
}
