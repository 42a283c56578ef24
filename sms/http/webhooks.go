package http

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/smsctl/smsctl/platform"
	"github.com/smsctl/smsctl/sms"
	"github.com/smsctl/smsctl/sms/webhook"
)

// WebhookStore is what the webhook endpoints' handlers read and write;
// *postgres.Webhooks is the implementation. Every method is scoped to an
// account: another account's endpoint is sms.ErrNotFound.
type WebhookStore interface {
	CreateEndpoint(ctx context.Context, accountID int64, in webhook.EndpointInput) (webhook.Endpoint, error)
	Endpoint(ctx context.Context, accountID int64, id uuid.UUID) (webhook.Endpoint, error)
	Endpoints(ctx context.Context, accountID int64) ([]webhook.Endpoint, error)
	UpdateEndpoint(ctx context.Context, accountID int64, id uuid.UUID, in webhook.EndpointInput) (webhook.Endpoint, error)
	DeleteEndpoint(ctx context.Context, accountID int64, id uuid.UUID) error
	RotateSecret(ctx context.Context, accountID int64, id uuid.UUID) (webhook.Endpoint, error)
	QueueTest(ctx context.Context, accountID int64, id uuid.UUID) (uuid.UUID, error)
	Attempts(ctx context.Context, accountID int64, id uuid.UUID, f webhook.AttemptFilter) (webhook.AttemptPage, error)
	Replay(ctx context.Context, accountID int64, id uuid.UUID, since time.Time) (int64, error)
}

// Webhooks serves /v1/webhook-endpoints.
type Webhooks struct {
	store WebhookStore
	guard webhook.Guard
	wake  func()
}

// NewWebhooks returns the handlers of the webhook endpoints. guard decides
// which URLs are accepted (webhook.Guard{AllowPrivate:
// cfg.Webhooks.AllowPrivate}); wake, when not nil, is called once a test
// event or a replay is queued, or an endpoint enabled, so the dispatcher
// looks at once (*webhook.Dispatcher.Wake).
func NewWebhooks(store WebhookStore, guard webhook.Guard, wake func()) *Webhooks {
	if wake == nil {
		wake = func() {}
	}
	return &Webhooks{store: store, guard: guard, wake: wake}
}

// Register mounts the routes on e behind the client middleware (the API
// handler's ClientMiddleware, which AccountOf reads).
func (h *Webhooks) Register(e *echo.Echo, client ...echo.MiddlewareFunc) {
	e.POST("/v1/webhook-endpoints", h.create, client...)
	platform.GET(e, "/v1/webhook-endpoints", h.list, client...)
	platform.GET(e, "/v1/webhook-endpoints/:id", h.get, client...)
	e.PATCH("/v1/webhook-endpoints/:id", h.update, client...)
	e.DELETE("/v1/webhook-endpoints/:id", h.delete, client...)
	e.POST("/v1/webhook-endpoints/:id/rotate-secret", h.rotate, client...)
	e.POST("/v1/webhook-endpoints/:id/test", h.test, client...)
	platform.GET(e, "/v1/webhook-endpoints/:id/deliveries", h.deliveries, client...)
	e.POST("/v1/webhook-endpoints/:id/replay", h.replay, client...)
}

// WebhookEndpointsResponse is the body of GET /v1/webhook-endpoints.
type WebhookEndpointsResponse struct {
	WebhookEndpoints []webhook.Endpoint `json:"webhook_endpoints"`
}

// WebhookTestResponse is the body of POST .../test.
type WebhookTestResponse struct {
	WebhookID uuid.UUID `json:"webhook_id"`
}

// WebhookDeliveriesResponse is the body of GET .../deliveries: one entry
// per attempt, newest first.
type WebhookDeliveriesResponse struct {
	Deliveries []webhook.Attempt `json:"deliveries"`
	NextAfter  *string           `json:"next_after"`
}

// WebhookReplayRequest is the body of POST .../replay.
type WebhookReplayRequest struct {
	Since *time.Time `json:"since"`
}

// WebhookReplayResponse is the answer to a replay.
type WebhookReplayResponse struct {
	Queued int64 `json:"queued"`
}

// readEndpoint decodes and validates an endpoint body, the url's safety
// included.
func (h *Webhooks) readEndpoint(c echo.Context, create bool) (webhook.EndpointInput, error) {
	var in webhook.EndpointInput
	if err := readJSON(c, &in); err != nil {
		return in, err
	}
	if err := in.Validate(create); err != nil {
		return in, err
	}
	if in.URL != nil {
		if err := h.guard.CheckURL(c.Request().Context(), *in.URL); err != nil {
			return in, err
		}
	}
	return in, nil
}

func (h *Webhooks) create(c echo.Context) error {
	in, err := h.readEndpoint(c, true)
	if err != nil {
		return err
	}
	ep, err := h.store.CreateEndpoint(c.Request().Context(), accountOf(c), in)
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderLocation, "/v1/webhook-endpoints/"+ep.ID.String())
	return c.JSON(http.StatusCreated, ep)
}

func (h *Webhooks) list(c echo.Context) error {
	eps, err := h.store.Endpoints(c.Request().Context(), accountOf(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, WebhookEndpointsResponse{WebhookEndpoints: eps})
}

func (h *Webhooks) get(c echo.Context) error {
	id, err := messageID(c)
	if err != nil {
		return err
	}
	ep, err := h.store.Endpoint(c.Request().Context(), accountOf(c), id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, ep)
}

func (h *Webhooks) update(c echo.Context) error {
	id, err := messageID(c)
	if err != nil {
		return err
	}
	in, err := h.readEndpoint(c, false)
	if err != nil {
		return err
	}
	ep, err := h.store.UpdateEndpoint(c.Request().Context(), accountOf(c), id, in)
	if err != nil {
		return err
	}
	if in.Enabled != nil && *in.Enabled {
		h.wake()
	}
	return c.JSON(http.StatusOK, ep)
}

func (h *Webhooks) delete(c echo.Context) error {
	id, err := messageID(c)
	if err != nil {
		return err
	}
	if err := h.store.DeleteEndpoint(c.Request().Context(), accountOf(c), id); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (h *Webhooks) rotate(c echo.Context) error {
	id, err := messageID(c)
	if err != nil {
		return err
	}
	ep, err := h.store.RotateSecret(c.Request().Context(), accountOf(c), id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, ep)
}

func (h *Webhooks) test(c echo.Context) error {
	id, err := messageID(c)
	if err != nil {
		return err
	}
	wid, err := h.store.QueueTest(c.Request().Context(), accountOf(c), id)
	if err != nil {
		return err
	}
	h.wake()
	return c.JSON(http.StatusAccepted, WebhookTestResponse{WebhookID: wid})
}

func (h *Webhooks) deliveries(c echo.Context) error {
	id, err := messageID(c)
	if err != nil {
		return err
	}
	f, err := parseAttemptFilter(c.Request().URL.RawQuery)
	if err != nil {
		return err
	}
	page, err := h.store.Attempts(c.Request().Context(), accountOf(c), id, f)
	if err != nil {
		return err
	}
	resp := WebhookDeliveriesResponse{Deliveries: page.Attempts}
	if page.Next != nil {
		s := page.Next.String()
		resp.NextAfter = &s
	}
	return c.JSON(http.StatusOK, resp)
}

// parseAttemptFilter reads size (1..100, default 20) and after (a
// next_after) as the message lists do.
func parseAttemptFilter(rawQuery string) (webhook.AttemptFilter, error) {
	f := webhook.AttemptFilter{Size: 20}
	var v sms.ValidationError
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		v.Add("query", err.Error())
		return f, v.Err()
	}
	if raw, ok := q["size"]; ok {
		n, err := strconv.Atoi(raw[0])
		if err != nil || n < 1 || n > 100 || len(raw) > 1 {
			v.Add("size", "must be one integer from 1 to 100")
		} else {
			f.Size = n
		}
	}
	if raw, ok := q["after"]; ok {
		cur, err := webhook.ParseCursor(raw[0])
		if err != nil || len(raw) > 1 {
			v.Add("after", "must be one cursor returned by this API as next_after")
		} else {
			f.After = &cur
		}
	}
	return f, v.Err()
}

func (h *Webhooks) replay(c echo.Context) error {
	id, err := messageID(c)
	if err != nil {
		return err
	}
	var req WebhookReplayRequest
	if err := readJSON(c, &req); err != nil {
		return err
	}
	switch {
	case req.Since == nil:
		return sms.Invalid("since", "required, an RFC 3339 timestamp: events since then are sent again")
	case req.Since.After(time.Now()):
		return sms.Invalid("since", "must not be in the future")
	}
	// UTC: PostgreSQL refuses offsets past ±15:59, which RFC 3339 allows.
	n, err := h.store.Replay(c.Request().Context(), accountOf(c), id, req.Since.UTC())
	if err != nil {
		return err
	}
	h.wake()
	return c.JSON(http.StatusAccepted, WebhookReplayResponse{Queued: n})
}
