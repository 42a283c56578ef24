package postgres

import (
	"database/sql"
	"errors"
	"fmt"

	"github.com/smsctl/smsctl/platform"
	"github.com/smsctl/smsctl/sms"
)

// storeErr wraps err with what was being done, and marks an outage
// (PostgreSQL unreachable, the connection lost, the pool closed) as
// sms.ErrUnavailable so that the client is told to retry.
func storeErr(op string, err error) error {
	if platform.IsUnavailable(err) || errors.Is(err, sql.ErrConnDone) {
		return sms.Unavailable(op, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}
