package console

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"github.com/lib/pq"

	"github.com/smsctl/smsctl/sms"
)

// listLimit is how many rows the read-only lists show.
const listLimit = 200

type tableData struct {
	Table genericTable
	// What names the table for people; Missing says what is not installed.
	What, Missing string
	// Unrouted is set when an operator looks at inbound messages to
	// nobody's number.
	Unrouted, CanUnroute bool
}

// numbers lists the numbers the account owns (issue 16's table, once it
// exists: its name is not settled, so the likely ones are tried).
func (c *Console) numbers(ec echo.Context) error {
	s := sessionOf(ec)
	d := tableData{What: "numbers", Missing: "Numbers are not installed on this server yet (no numbers table in schema sms)."}
	for _, name := range []string{"numbers", "phone_numbers", "account_numbers"} {
		t, err := c.read.genericRows(ec.Request().Context(), name, s.scope(), false, listLimit)
		if err != nil {
			return c.fail(ec, err)
		}
		if t.Exists {
			d.Table = t
			break
		}
	}
	return c.page(ec, "table", "Numbers", "numbers", d)
}

// inbound lists inbound messages (sms.inbound_messages, once it exists);
// operators may look at those to nobody's number.
func (c *Console) inbound(ec echo.Context) error {
	s := sessionOf(ec)
	unrouted := s.operator() && s.scope() == 0 && ec.QueryParam("unrouted") == "1"
	t, err := c.read.genericRows(ec.Request().Context(), "inbound_messages", s.scope(), unrouted, listLimit)
	if err != nil {
		return c.fail(ec, err)
	}
	d := tableData{Table: t, What: "inbound messages", Unrouted: unrouted, CanUnroute: s.operator() && s.scope() == 0,
		Missing: "Inbound messages are not installed on this server yet (no sms.inbound_messages table)."}
	return c.page(ec, "table", "Inbound messages", "inbound", d)
}

type suppressionsData struct {
	Rows        []suppressionRow
	Phone       string
	Problem     string
	ShowAccount bool
	Limited     bool
}

func (c *Console) suppressions(ec echo.Context) error {
	s := sessionOf(ec)
	d := suppressionsData{Phone: ec.QueryParam("phone"), ShowAccount: s.scope() == 0}
	phone := ""
	if p := strings.TrimSpace(d.Phone); p != "" {
		n, err := sms.NormalizePhone(p)
		if err != nil {
			d.Problem = "phone: " + err.Error()
		}
		phone = n
	}
	if d.Problem == "" {
		rows, err := c.read.suppressions(ec.Request().Context(), s.scope(), phone, listLimit+1)
		if err != nil {
			return c.fail(ec, err)
		}
		if len(rows) > listLimit {
			rows, d.Limited = rows[:listLimit], true
		}
		d.Rows = rows
	}
	return c.page(ec, "suppressions", "Suppressions", "suppressions", d)
}

func (c *Console) accounts(ec echo.Context) error {
	rows, err := c.read.accounts(ec.Request().Context(), 1000)
	if err != nil {
		return c.fail(ec, err)
	}
	return c.page(ec, "accounts", "Accounts", "accounts", map[string]any{"Rows": rows, "Limited": len(rows) == 1000})
}

type deadLettersData struct {
	Configured bool
	Page       DeadLetterPage
	// Status is the status now of each record's message, where known.
	Status  map[uuid.UUID]sms.Status
	Problem string
}

// deadLetterLimit is how many records the view reads.
const deadLetterLimit = 100

func (c *Console) deadLetters(ec echo.Context) error {
	d := deadLettersData{Configured: c.d.DeadLetters != nil}
	if d.Configured {
		ctx := ec.Request().Context()
		page, err := c.d.DeadLetters.Recent(ctx, deadLetterLimit)
		if err != nil {
			c.log.Warn().Err(err).Msg("console: reading the dead-letter topic failed")
			d.Problem = "The dead-letter topic could not be read: Kafka may be unavailable. Retry in a moment."
		}
		d.Page = page
		var ids []string
		for _, r := range page.Records {
			if r.HasMessage {
				ids = append(ids, r.MessageID.String())
			}
		}
		if len(ids) > 0 {
			var rows []struct {
				ID     uuid.UUID  `db:"id"`
				Status sms.Status `db:"status"`
			}
			if err := c.read.db.SelectContext(ctx, &rows, `SELECT id, status FROM sms.messages WHERE id = ANY($1::uuid[])`, pq.Array(ids)); err != nil {
				return c.fail(ec, dbErr("statuses of dead letters", err))
			}
			d.Status = make(map[uuid.UUID]sms.Status, len(rows))
			for _, r := range rows {
				d.Status[r.ID] = r.Status
			}
		}
	}
	return c.page(ec, "deadletters", "Dead letters", "deadletters", d)
}

func (c *Console) redrive(ec echo.Context) error {
	if c.d.DeadLetters == nil {
		return c.notFound(ec)
	}
	p, err1 := strconv.ParseInt(ec.FormValue("partition"), 10, 32)
	off, err2 := strconv.ParseInt(ec.FormValue("offset"), 10, 64)
	if err1 != nil || err2 != nil || p < 0 || off < 0 {
		return c.fail(ec, sms.Invalid("record", "partition and offset must be numbers"))
	}
	topic, err := c.d.DeadLetters.Redrive(ec.Request().Context(), int32(p), off)
	if err != nil {
		return c.fail(ec, err)
	}
	c.log.Info().Str("actor", actor(sessionOf(ec))).Str("action", "redrive").Int64("partition", p).Int64("offset", off).
		Str("topic", topic).Msg("console action")
	return ec.Redirect(http.StatusSeeOther, "/console/dead-letters?done=redriven")
}
