package console

import (
	"context"
	"database/sql"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/smsctl/smsctl/sms"
	"github.com/smsctl/smsctl/sms/webhook"
)

type webhooksData struct {
	Enabled   bool
	Endpoints []webhook.Endpoint
	Types     []string
	Form      webhookForm
	Errors    map[string]string
}

type webhookForm struct {
	URL, Description string
	Types            []string
}

func (c *Console) webhooks(ec echo.Context) error {
	d := webhooksData{Enabled: c.d.Webhooks != nil, Types: webhook.EventTypes}
	if !d.Enabled {
		return c.page(ec, "webhooks", "Webhook endpoints", "webhooks", d)
	}
	account, ok, err := c.needAccount(ec, "manage webhook endpoints")
	if !ok {
		return err
	}
	if d.Endpoints, err = c.d.Webhooks.Endpoints(ec.Request().Context(), account); err != nil {
		return c.fail(ec, err)
	}
	return c.page(ec, "webhooks", "Webhook endpoints", "webhooks", d)
}

func (c *Console) createWebhook(ec echo.Context) error {
	if c.d.Webhooks == nil {
		return c.notFound(ec)
	}
	account, ok, err := c.needAccount(ec, "manage webhook endpoints")
	if !ok {
		return err
	}
	form, err := ec.FormParams()
	if err != nil {
		return c.fail(ec, sms.Malformed("unreadable form"))
	}
	f := webhookForm{URL: strings.TrimSpace(form.Get("url")), Description: form.Get("description"), Types: form["event_types"]}
	types := append([]string{}, f.Types...)
	in := webhook.EndpointInput{URL: &f.URL, Description: &f.Description, EventTypes: &types}
	ctx := ec.Request().Context()
	err = in.Validate(true)
	if err == nil {
		err = c.d.URLGuard.CheckURL(ctx, f.URL)
	}
	var ep webhook.Endpoint
	if err == nil {
		ep, err = c.d.Webhooks.CreateEndpoint(ctx, account, in)
	}
	if err != nil {
		switch sms.ErrorCode(err) {
		case sms.CodeInvalid, sms.CodeUnprocessable, sms.CodeMalformed:
		default:
			return c.fail(ec, err)
		}
		d := webhooksData{Enabled: true, Types: webhook.EventTypes, Form: f, Errors: fieldErrors(err)}
		if d.Endpoints, err = c.d.Webhooks.Endpoints(ctx, account); err != nil {
			return c.fail(ec, err)
		}
		v, verr := c.newView(ec, "Webhook endpoints", "webhooks", d)
		if verr != nil {
			return c.fail(ec, verr)
		}
		v.Error = "The endpoint was not created: " + userMessage(err)
		return c.render(ec, http.StatusUnprocessableEntity, "webhooks", v)
	}
	c.log.Info().Str("actor", actor(sessionOf(ec))).Str("action", "create_webhook").Str("endpoint_id", ep.ID.String()).Int64("account_id", account).Msg("console action")
	return c.showWebhook(ec, account, ep.ID, ep.Secret, "Endpoint created.")
}

type webhookData struct {
	Endpoint webhook.Endpoint
	// Secret is a secret just made (creation or rotation), shown once.
	Secret   string
	Attempts []webhook.Attempt
	NextURL  string
	Since    string
}

// endpointAccount is the account of endpoint id the session may act on.
func (c *Console) endpointAccount(ctx context.Context, s *session, id uuid.UUID) (int64, error) {
	if s.scope() != 0 {
		return s.scope(), nil
	}
	var account int64
	err := c.read.db.GetContext(ctx, &account, `SELECT account_id FROM sms.webhook_endpoints WHERE id = $1`, id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, sms.ErrNotFound
	}
	if err != nil {
		return 0, dbErr("endpoint's account", err)
	}
	return account, nil
}

func (c *Console) webhookPage(ec echo.Context) error {
	if c.d.Webhooks == nil {
		return c.notFound(ec)
	}
	id, err := uuid.Parse(ec.Param("id"))
	if err != nil {
		return c.notFound(ec)
	}
	account, err := c.endpointAccount(ec.Request().Context(), sessionOf(ec), id)
	if err != nil {
		return c.fail(ec, err)
	}
	return c.showWebhook(ec, account, id, "", "")
}

func (c *Console) showWebhook(ec echo.Context, account int64, id uuid.UUID, secret, notice string) error {
	ctx := ec.Request().Context()
	ep, err := c.d.Webhooks.Endpoint(ctx, account, id)
	if err != nil {
		return c.fail(ec, err)
	}
	f := webhook.AttemptFilter{Size: 50}
	if a := ec.QueryParam("after"); a != "" {
		if cur, err := webhook.ParseCursor(a); err == nil {
			f.After = &cur
		}
	}
	page, err := c.d.Webhooks.Attempts(ctx, account, id, f)
	if err != nil {
		return c.fail(ec, err)
	}
	d := webhookData{Endpoint: ep, Secret: secret, Attempts: page.Attempts,
		Since: c.now().Add(-time.Hour).UTC().Format(formTime)}
	if page.Next != nil {
		d.NextURL = "/console/webhooks/" + id.String() + "?" + url.Values{"after": {page.Next.String()}}.Encode()
	}
	v, err := c.newView(ec, "Webhook endpoint", "webhooks", d)
	if err != nil {
		return c.fail(ec, err)
	}
	if notice != "" {
		v.Notice = notice
	}
	if n := ec.QueryParam("queued"); n != "" {
		if k, err := strconv.Atoi(n); err == nil {
			v.Notice = strconv.Itoa(k) + " deliveries queued again."
		}
	}
	return c.render(ec, http.StatusOK, "webhook", v)
}

// webhookAction runs one of the endpoint's buttons.
func (c *Console) webhookAction(ec echo.Context) error {
	if c.d.Webhooks == nil {
		return c.notFound(ec)
	}
	id, err := uuid.Parse(ec.Param("id"))
	if err != nil {
		return c.notFound(ec)
	}
	s := sessionOf(ec)
	ctx := ec.Request().Context()
	account, err := c.endpointAccount(ctx, s, id)
	if err != nil {
		return c.fail(ec, err)
	}
	action := ec.Param("action")
	back := "/console/webhooks/" + id.String()
	wake := func() {
		if c.d.WakeWebhooks != nil {
			c.d.WakeWebhooks()
		}
	}
	var done string
	switch action {
	case "test":
		_, err = c.d.Webhooks.QueueTest(ctx, account, id)
		wake()
		done = "tested"
	case "rotate":
		var ep webhook.Endpoint
		if ep, err = c.d.Webhooks.RotateSecret(ctx, account, id); err == nil {
			c.log.Info().Str("actor", actor(s)).Str("action", "rotate_webhook_secret").Str("endpoint_id", id.String()).Msg("console action")
			return c.showWebhook(ec, account, id, ep.Secret, "Secret rotated: the previous one signs too for 24 hours.")
		}
	case "enable", "disable":
		on := action == "enable"
		_, err = c.d.Webhooks.UpdateEndpoint(ctx, account, id, webhook.EndpointInput{Enabled: &on})
		if on {
			wake()
		}
		done = action + "d"
	case "delete":
		if err = c.d.Webhooks.DeleteEndpoint(ctx, account, id); err == nil {
			c.log.Info().Str("actor", actor(s)).Str("action", "delete_webhook").Str("endpoint_id", id.String()).Msg("console action")
			return ec.Redirect(http.StatusSeeOther, "/console/webhooks?done=deleted")
		}
	case "replay":
		since, perr := time.ParseInLocation(formTime, ec.FormValue("since"), time.UTC)
		if perr != nil {
			return c.fail(ec, sms.Invalid("since", "must be a date and time (UTC)"))
		}
		var n int64
		if n, err = c.d.Webhooks.Replay(ctx, account, id, since); err == nil {
			wake()
			c.log.Info().Str("actor", actor(s)).Str("action", "replay_webhooks").Str("endpoint_id", id.String()).Int64("queued", n).Msg("console action")
			return ec.Redirect(http.StatusSeeOther, back+"?queued="+strconv.FormatInt(n, 10))
		}
	default:
		return c.notFound(ec)
	}
	if err != nil {
		return c.fail(ec, err)
	}
	c.log.Info().Str("actor", actor(s)).Str("action", action+"_webhook").Str("endpoint_id", id.String()).Msg("console action")
	return ec.Redirect(http.StatusSeeOther, back+"?done="+done)
}
