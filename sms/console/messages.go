package console

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/smsctl/smsctl/platform"
	"github.com/smsctl/smsctl/sms"
)

// pageSize is how many messages a list shows.
const pageSize = 50

// maxSelected bounds the messages one bulk form acts on.
const maxSelected = 100

// formTime is the format of <input type="datetime-local">, read as UTC.
const formTime = "2006-01-02T15:04"

type messagesData struct {
	Status, Phone, From, To, Q string
	Rows                       []messageRow
	// NextURL is the link to the next (older) page, "" on the last.
	NextURL string
	// Paged says this is not the first page.
	Paged       bool
	ShowAccount bool
	Problem     string
}

// parseListFilter reads the query of a message list; the problem, if any,
// is shown above the list.
func parseListFilter(q url.Values) (listFilter, string) {
	f := listFilter{Size: pageSize}
	var problems []string
	if s := q.Get("status"); s != "" {
		st, err := sms.ParseStatus(s)
		if err != nil {
			problems = append(problems, "status "+err.Error())
		} else {
			f.Statuses = []sms.Status{st}
		}
	}
	if p := strings.TrimSpace(q.Get("phone")); p != "" {
		n, err := sms.NormalizePhone(p)
		if err != nil {
			problems = append(problems, "phone: "+err.Error())
		} else {
			f.Phone = n
		}
	}
	for _, b := range []struct {
		name string
		dst  **time.Time
	}{{"from", &f.From}, {"to", &f.To}} {
		if v := q.Get(b.name); v != "" {
			t, err := time.ParseInLocation(formTime, v, time.UTC)
			if err != nil {
				problems = append(problems, b.name+": must be a date and time (YYYY-MM-DDTHH:MM, UTC)")
				continue
			}
			*b.dst = &t
		}
	}
	if a := q.Get("after"); a != "" {
		cur, err := sms.ParseCursor(a)
		if err != nil {
			problems = append(problems, "after: "+err.Error())
		} else {
			f.After = &cur
		}
	}
	return f, strings.Join(problems, "; ")
}

func (c *Console) messages(ec echo.Context) error {
	q := ec.QueryParams()
	s := sessionOf(ec)
	// Search: an id opens the message; anything else searches as a phone.
	if raw := strings.TrimSpace(q.Get("q")); raw != "" {
		if id, err := uuid.Parse(raw); err == nil {
			return ec.Redirect(http.StatusSeeOther, "/console/messages/"+id.String())
		}
		q.Set("phone", raw)
		q.Del("q")
	}
	f, problem := parseListFilter(q)
	d := messagesData{Status: q.Get("status"), Phone: q.Get("phone"), From: q.Get("from"), To: q.Get("to"),
		ShowAccount: s.scope() == 0, Problem: problem, Paged: f.After != nil}
	if problem == "" {
		rows, next, err := c.read.listMessages(ec.Request().Context(), s.scope(), f)
		if err != nil {
			return c.fail(ec, err)
		}
		d.Rows = rows
		if next != nil {
			nq := url.Values{}
			for _, k := range []string{"status", "phone", "from", "to"} {
				if v := q.Get(k); v != "" {
					nq.Set(k, v)
				}
			}
			nq.Set("after", next.String())
			d.NextURL = "/console/messages?" + nq.Encode()
		}
	}
	return c.page(ec, "messages", "Messages", "messages", d)
}

type messageData struct {
	M           messageRow
	Events      []sms.Event
	Deliveries  []deliveryRow
	HasWebhooks bool
	CanRetry    bool
	CanCancel   bool
	ShowAccount bool
}

// loadMessage reads the message of the path's id that the session may see.
func (c *Console) loadMessage(ec echo.Context) (messageData, error) {
	id, err := uuid.Parse(ec.Param("id"))
	if err != nil {
		return messageData{}, sms.ErrNotFound
	}
	s := sessionOf(ec)
	ctx := ec.Request().Context()
	m, err := c.read.message(ctx, s.scope(), id)
	if err != nil {
		return messageData{}, err
	}
	d := messageData{M: m, ShowAccount: s.operator(), CanRetry: m.Status.Retryable(),
		CanCancel: m.Status == sms.StatusScheduled || m.Status == sms.StatusPending}
	if d.Events, err = c.d.Store.Events(ctx, m.AccountID, id); err != nil {
		return d, err
	}
	if d.Deliveries, d.HasWebhooks, err = c.read.messageDeliveries(ctx, m.Message); err != nil {
		return d, err
	}
	return d, nil
}

func (c *Console) message(ec echo.Context) error {
	return c.showMessage(ec, http.StatusOK, "")
}

func (c *Console) showMessage(ec echo.Context, status int, problem string) error {
	d, err := c.loadMessage(ec)
	if err != nil {
		return c.fail(ec, err)
	}
	v, err := c.newView(ec, "Message "+d.M.ID.String()[:8], "messages", d)
	if err != nil {
		return c.fail(ec, err)
	}
	v.Error = problem
	return c.render(ec, status, "message", v)
}

func (c *Console) messageLive(ec echo.Context) error {
	d, err := c.loadMessage(ec)
	if err != nil {
		return c.fail(ec, err)
	}
	return c.renderLive(ec, "message", c.liveView(ec, d))
}

// actor names who acted, for the log.
func actor(s *session) string {
	if s.operator() {
		return "operator"
	}
	return "account:" + strconv.FormatInt(s.Account, 10) + ":" + s.KeyPrefix
}

func (c *Console) retryOne(ec echo.Context) error { return c.moveOne(ec, "retry") }

func (c *Console) cancelOne(ec echo.Context) error { return c.moveOne(ec, "cancel") }

// moveOne retries or cancels the message of the path, through the store
// as the API does.
func (c *Console) moveOne(ec echo.Context, action string) error {
	id, err := uuid.Parse(ec.Param("id"))
	if err != nil {
		return c.notFound(ec)
	}
	s := sessionOf(ec)
	ctx := ec.Request().Context()
	m, err := c.read.message(ctx, s.scope(), id)
	if err != nil {
		return c.fail(ec, err)
	}
	done := ""
	if action == "retry" {
		_, err = c.d.Store.Retry(ctx, m.AccountID, id)
		done = "retried"
	} else {
		_, err = c.d.Store.Cancel(ctx, m.AccountID, id)
		done = "canceled"
	}
	if sms.ErrorCode(err) == sms.CodeConflict {
		return c.showMessage(ec, http.StatusConflict, userMessage(err))
	}
	if err != nil {
		return c.fail(ec, err)
	}
	if action == "retry" && c.d.Backlog != nil {
		c.d.Backlog.Wake()
	}
	c.log.Info().Str("actor", actor(s)).Str("action", action).Str("message_id", id.String()).Int64("account_id", m.AccountID).Msg("console action")
	return ec.Redirect(http.StatusSeeOther, "/console/messages/"+id.String()+"?done="+done)
}

// selectedIDs reads the ids a bulk form acts on: the one of the button
// pressed (id), else the boxes ticked (ids).
func selectedIDs(ec echo.Context) ([]uuid.UUID, error) {
	form, err := ec.FormParams()
	if err != nil {
		return nil, err
	}
	raw := form["ids"]
	if one := form.Get("id"); one != "" {
		raw = []string{one}
	}
	if len(raw) > maxSelected {
		return nil, sms.Invalid("ids", fmt.Sprintf("select at most %d messages at once", maxSelected))
	}
	var ids []uuid.UUID
	for _, r := range raw {
		id, err := uuid.Parse(r)
		if err != nil {
			return nil, sms.Invalid("ids", "must be message ids")
		}
		ids = append(ids, id)
	}
	if len(ids) == 0 {
		return nil, sms.Invalid("ids", "select at least one message")
	}
	return ids, nil
}

// moveMany retries or cancels the selected messages the session may see,
// one by one through the store; it returns how many moved and how many the
// store refused (not in a status that allows it).
func (c *Console) moveMany(ec echo.Context, action string) (moved, refused int, err error) {
	ids, err := selectedIDs(ec)
	if err != nil {
		return 0, 0, err
	}
	s := sessionOf(ec)
	ctx := ec.Request().Context()
	owners, err := c.read.owners(ctx, s.scope(), ids)
	if err != nil {
		return 0, 0, err
	}
	for _, id := range ids {
		account, ok := owners[id]
		if !ok {
			refused++
			continue
		}
		if action == "retry" {
			_, err = c.d.Store.Retry(ctx, account, id)
		} else {
			_, err = c.d.Store.Cancel(ctx, account, id)
		}
		switch code := sms.ErrorCode(err); {
		case err == nil:
			moved++
			c.log.Info().Str("actor", actor(s)).Str("action", action).Str("message_id", id.String()).Int64("account_id", account).Msg("console action")
		case code == sms.CodeConflict || code == sms.CodeNotFound:
			refused++
		default:
			return moved, refused, err
		}
	}
	if action == "retry" && moved > 0 && c.d.Backlog != nil {
		c.d.Backlog.Wake()
	}
	return moved, refused, nil
}

type bulkData struct {
	messagesData
	Tabs   []sms.Status
	Action string
}

func (c *Console) bulkList(ec echo.Context, name, title string, statuses []sms.Status, allowed []sms.Status) error {
	q := ec.QueryParams()
	s := sessionOf(ec)
	f, problem := parseListFilter(q)
	if len(f.Statuses) == 0 {
		f.Statuses = statuses
	}
	for _, st := range f.Statuses {
		if !containsStatus(allowed, st) {
			f.Statuses, problem = statuses, ""
			break
		}
	}
	d := bulkData{messagesData: messagesData{Status: q.Get("status"), Phone: q.Get("phone"), ShowAccount: s.scope() == 0,
		Problem: problem, Paged: f.After != nil}, Tabs: allowed, Action: map[string]string{"failed": "Retry", "scheduled": "Cancel"}[name]}
	if problem == "" {
		rows, next, err := c.read.listMessages(ec.Request().Context(), s.scope(), f)
		if err != nil {
			return c.fail(ec, err)
		}
		d.Rows = rows
		if next != nil {
			nq := url.Values{}
			if d.Status != "" {
				nq.Set("status", d.Status)
			}
			nq.Set("after", next.String())
			d.NextURL = "/console/" + name + "?" + nq.Encode()
		}
	}
	v, err := c.newView(ec, title, name, d)
	if err != nil {
		return c.fail(ec, err)
	}
	if n, err := strconv.Atoi(ec.QueryParam("n")); err == nil {
		skipped, _ := strconv.Atoi(ec.QueryParam("skipped"))
		verb := map[string]string{"failed": "queued again", "scheduled": "canceled"}[name]
		v.Notice = fmt.Sprintf("%d %s; %d could not be (no longer in a status that allows it).", n, verb, skipped)
	}
	return c.render(ec, http.StatusOK, name, v)
}

func containsStatus(list []sms.Status, s sms.Status) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

var retryable = []sms.Status{sms.StatusFailed, sms.StatusUndelivered, sms.StatusExpired}

func (c *Console) failed(ec echo.Context) error {
	return c.bulkList(ec, "failed", "Failed and undelivered", retryable, retryable)
}

func (c *Console) scheduled(ec echo.Context) error {
	st := []sms.Status{sms.StatusScheduled}
	return c.bulkList(ec, "scheduled", "Scheduled", st, st)
}

func (c *Console) retryMany(ec echo.Context) error {
	moved, refused, err := c.moveMany(ec, "retry")
	if err != nil {
		return c.fail(ec, err)
	}
	q := url.Values{"n": {strconv.Itoa(moved)}, "skipped": {strconv.Itoa(refused)}}
	if st := ec.FormValue("status"); st != "" {
		if _, err := sms.ParseStatus(st); err == nil {
			q.Set("status", st)
		}
	}
	return ec.Redirect(http.StatusSeeOther, "/console/failed?"+q.Encode())
}

func (c *Console) cancelMany(ec echo.Context) error {
	moved, refused, err := c.moveMany(ec, "cancel")
	if err != nil {
		return c.fail(ec, err)
	}
	q := url.Values{"n": {strconv.Itoa(moved)}, "skipped": {strconv.Itoa(refused)}}
	return ec.Redirect(http.StatusSeeOther, "/console/scheduled?"+q.Encode())
}

// sendForm is the send form's fields as typed.
type sendForm struct {
	Sender, Recipient, Text, SendAt, Validity, Priority string
}

type sendData struct {
	Form   sendForm
	Errors map[string]string
}

// needAccount returns the account a session acts for, or false when an
// operator looks at every account and must choose one first (the choose
// page is rendered).
func (c *Console) needAccount(ec echo.Context, what string) (int64, bool, error) {
	s := sessionOf(ec)
	if s.scope() != 0 {
		return s.scope(), true, nil
	}
	accounts, err := c.read.accounts(ec.Request().Context(), 1000)
	if err != nil {
		return 0, false, c.fail(ec, err)
	}
	return 0, false, c.page(ec, "choose", "Choose an account", "", map[string]any{"What": what, "Accounts": accounts,
		"Next": ec.Request().URL.RequestURI()})
}

func (c *Console) sendPage(ec echo.Context) error {
	if _, ok, err := c.needAccount(ec, "send a message"); !ok {
		return err
	}
	return c.page(ec, "send", "Send a message", "send", sendData{Form: sendForm{Priority: "normal"}})
}

// send accepts a message as POST /v1/messages does: the same validation,
// the same outbox backlog limit, the same writer.
func (c *Console) send(ec echo.Context) error {
	account, ok, err := c.needAccount(ec, "send a message")
	if !ok {
		return err
	}
	f := sendForm{Sender: ec.FormValue("sender"), Recipient: ec.FormValue("recipient"), Text: ec.FormValue("text"),
		SendAt: ec.FormValue("send_at"), Validity: ec.FormValue("validity_period"), Priority: ec.FormValue("priority")}
	in := sms.SendInput{Sender: f.Sender, Recipient: f.Recipient, Text: f.Text, Priority: sms.Priority(f.Priority)}
	var v sms.ValidationError
	if f.SendAt != "" {
		t, err := time.ParseInLocation(formTime, f.SendAt, time.UTC)
		if err != nil {
			v.Add("send_at", "must be a date and time (UTC)")
		} else {
			in.SendAt = &t
		}
	}
	if f.Validity != "" {
		n, err := strconv.Atoi(f.Validity)
		if err != nil {
			v.Add("validity_period", "must be a whole number of seconds")
		} else {
			in.ValidityPeriod = &n
		}
	}
	draft, err := in.Validate()
	var ve *sms.ValidationError
	if errors.As(err, &ve) {
		v.Violations = append(v.Violations, ve.Violations...)
	} else if err != nil {
		return c.fail(ec, err)
	}
	ctx := ec.Request().Context()
	if len(v.Violations) == 0 && c.d.OptOuts != nil {
		if err := c.d.OptOuts.Check(ctx, account, draft.Recipient); sms.ErrorCode(err) == sms.CodeUnprocessable {
			v.Add("recipient", userMessage(err))
		} else if err != nil {
			return c.fail(ec, err)
		}
	}
	if len(v.Violations) > 0 {
		view, err := c.newView(ec, "Send a message", "send", sendData{Form: f, Errors: fieldErrors(&v)})
		if err != nil {
			return c.fail(ec, err)
		}
		view.Error = "The message was not sent: check the fields marked below."
		return c.render(ec, http.StatusBadRequest, "send", view)
	}
	if c.d.Backlog != nil && c.cfg.MaxBacklog > 0 && c.d.Backlog.Backlog() >= c.cfg.MaxBacklog {
		return c.fail(ec, sms.ErrBacklogFull)
	}
	m, err := c.d.Sender.Insert(ctx, sms.NewMessage{AccountID: account, Draft: draft, Traceparent: platform.Traceparent(ctx)})
	if err != nil {
		return c.fail(ec, err)
	}
	c.log.Info().Str("actor", actor(sessionOf(ec))).Str("action", "send").Str("message_id", m.ID.String()).Int64("account_id", account).Msg("console action")
	return ec.Redirect(http.StatusSeeOther, "/console/messages/"+m.ID.String()+"?done=sent")
}
