package http

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/smsctl/smsctl/platform"
	"github.com/smsctl/smsctl/sms"
)

// InboundStore is what the two-way messaging routes read and write;
// *postgres.Inbound is the implementation. Every method but Receive is
// scoped to an account.
type InboundStore interface {
	Receive(ctx context.Context, r sms.InboundReport) (sms.InboundResult, error)
	Numbers(ctx context.Context, accountID int64) ([]sms.Number, error)
	InboundMessage(ctx context.Context, accountID int64, id uuid.UUID) (sms.InboundMessage, error)
	InboundMessages(ctx context.Context, accountID int64, f sms.InboundFilter) (sms.InboundPage, error)
	Suppression(ctx context.Context, accountID int64, phone string) (sms.Suppression, error)
	Suppressions(ctx context.Context, accountID int64, f sms.SuppressionFilter) (sms.SuppressionPage, error)
	AddSuppression(ctx context.Context, accountID int64, phone, reason string) (sms.Suppression, bool, error)
	AddSuppressions(ctx context.Context, accountID int64, phones []string, reason string) (int64, error)
	RemoveSuppression(ctx context.Context, accountID int64, phone string) error
	KeywordSettings(ctx context.Context, accountID int64) (sms.KeywordSettings, error)
	SetKeywordSettings(ctx context.Context, accountID int64, s sms.KeywordSettings) error
}

// MaxSuppressionImportBytes is the largest body of POST /v1/suppressions:
// sms.MaxSuppressionImport phones written with separators fit.
const MaxSuppressionImportBytes = 1 << 20

// Inbound serves two-way messaging: the processor's hand-over of inbound
// messages, and the account's numbers, inbound messages, suppressions and
// keyword settings.
type Inbound struct {
	store InboundStore
	log   zerolog.Logger

	received   prometheus.Counter
	unrouted   prometheus.Counter
	duplicates prometheus.Counter
	keywords   *prometheus.CounterVec
}

// NewInbound returns the two-way messaging handlers; metrics are
// registered on reg.
func NewInbound(store InboundStore, log zerolog.Logger, reg prometheus.Registerer) *Inbound {
	h := &Inbound{store: store, log: log.With().Str("component", "inbound").Logger(),
		received: prometheus.NewCounter(prometheus.CounterOpts{Name: "sms_inbound_received_total",
			Help: "Inbound messages taken (repeats of a carrier id not counted)."}),
		unrouted: prometheus.NewCounter(prometheus.CounterOpts{Name: "sms_inbound_unrouted_total",
			Help: "Inbound messages to a number no account owns (kept for operators)."}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{Name: "sms_inbound_duplicate_total",
			Help: "Inbound hand-overs of a carrier id taken before (changed nothing)."}),
		keywords: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sms_inbound_keywords_total",
			Help: "Keywords applied from inbound messages, by keyword."}, []string{"keyword"}),
	}
	reg.MustRegister(h.received, h.unrouted, h.duplicates, h.keywords)
	return h
}

// Register mounts the account's routes on e behind client (the API
// handler's ClientMiddleware) and, when internal is not nil, POST
// /v1/internal/inbound on internal behind internalOnly (its
// InternalMiddleware).
func (h *Inbound) Register(e *echo.Echo, internal *echo.Echo, client []echo.MiddlewareFunc, internalOnly echo.MiddlewareFunc) {
	platform.GET(e, "/v1/numbers", h.numbers, client...)
	platform.GET(e, "/v1/inbound-messages", h.list, client...)
	platform.GET(e, "/v1/inbound-messages/:id", h.get, client...)
	platform.GET(e, "/v1/suppressions", h.suppressions, client...)
	e.POST("/v1/suppressions", h.suppress, client...)
	platform.GET(e, "/v1/suppressions/:phone", h.suppression, client...)
	e.DELETE("/v1/suppressions/:phone", h.unsuppress, client...)
	platform.GET(e, "/v1/keyword-settings", h.keywordSettings, client...)
	e.PUT("/v1/keyword-settings", h.setKeywordSettings, client...)
	if internal != nil {
		internal.POST("/v1/internal/inbound", h.receive, internalOnly)
	}
}

// inboundInput is an inbound message as the processor hands it over; its
// time is a string so that a malformed one is a violation naming it.
type inboundInput struct {
	From             string `json:"from"`
	To               string `json:"to"`
	Text             string `json:"text"`
	ReceivedAt       string `json:"received_at"`
	CarrierMessageID string `json:"carrier_message_id"`
}

// receive takes one inbound message: 200 and what was done with it
// (sms.InboundResult), the same for a repeat of its carrier_message_id,
// which also gets Idempotent-Replayed: true.
func (h *Inbound) receive(c echo.Context) error {
	var in inboundInput
	if err := readJSON(c, &in); err != nil {
		return err
	}
	r := sms.InboundReport{From: in.From, To: in.To, Text: in.Text, CarrierMessageID: in.CarrierMessageID}
	var v sms.ValidationError
	badTime := false
	if in.ReceivedAt != "" {
		at, err := time.Parse(time.RFC3339Nano, in.ReceivedAt)
		if err != nil {
			v.Add("received_at", "must be an RFC 3339 timestamp")
			badTime = true
		}
		r.ReceivedAt = at.UTC() // PostgreSQL refuses offsets past ±15:59
	}
	r, err := r.Normalize()
	var ve *sms.ValidationError
	if errors.As(err, &ve) {
		for _, x := range ve.Violations {
			if !(badTime && x.Field == "received_at") {
				v.Violations = append(v.Violations, x)
			}
		}
	} else if err != nil {
		return err
	}
	if err := v.Err(); err != nil {
		return err
	}
	res, err := h.store.Receive(c.Request().Context(), r)
	if err != nil {
		return err
	}
	if res.Duplicate {
		h.duplicates.Inc()
		c.Response().Header().Set("Idempotent-Replayed", "true")
		return c.JSON(http.StatusOK, res)
	}
	h.received.Inc()
	if !res.AccountRouted {
		h.unrouted.Inc()
		h.log.Info().Str("inbound_id", res.ID.String()).Str("to", r.To).Msg("inbound message to a number no account owns; kept as unrouted")
	}
	if res.Keyword != nil {
		h.keywords.WithLabelValues(string(*res.Keyword)).Inc()
	}
	return c.JSON(http.StatusOK, res)
}

// NumbersResponse is the body of GET /v1/numbers.
type NumbersResponse struct {
	Numbers []sms.Number `json:"numbers"`
}

func (h *Inbound) numbers(c echo.Context) error {
	ns, err := h.store.Numbers(c.Request().Context(), accountOf(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, NumbersResponse{Numbers: ns})
}

// InboundPageResponse is the body of GET /v1/inbound-messages, paged as
// GET /v1/messages is.
type InboundPageResponse struct {
	InboundMessages []sms.InboundMessage `json:"inbound_messages"`
	TotalCount      int64                `json:"total_count"`
	Page            int                  `json:"page"`
	PageSize        int                  `json:"page_size"`
	TotalPages      int64                `json:"total_pages"`
	NextAfter       *string              `json:"next_after"`
}

// list serves GET /v1/inbound-messages: page, size and after as for
// messages, and the filters from, to (phone numbers), since and until
// (RFC 3339; since inclusive, until exclusive) on received_at.
func (h *Inbound) list(c echo.Context) error {
	f, err := parseInboundFilter(c.Request().URL.RawQuery)
	if err != nil {
		return err
	}
	p, err := h.store.InboundMessages(c.Request().Context(), accountOf(c), f)
	if err != nil {
		return err
	}
	resp := InboundPageResponse{InboundMessages: p.Messages, TotalCount: p.TotalCount, Page: f.Page, PageSize: f.Size,
		TotalPages: (p.TotalCount + int64(f.Size) - 1) / int64(f.Size)}
	if p.Next != nil {
		s := p.Next.String()
		resp.NextAfter = &s
	}
	return c.JSON(http.StatusOK, resp)
}

func parseInboundFilter(rawQuery string) (sms.InboundFilter, error) {
	var v sms.ValidationError
	mf, err := parseFilter(rawQuery, false)
	var ve *sms.ValidationError
	if errors.As(err, &ve) {
		v.Violations = append(v.Violations, ve.Violations...)
	} else if err != nil {
		return sms.InboundFilter{}, err
	}
	f := sms.InboundFilter{Page: mf.Page, Size: mf.Size, After: mf.After}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return f, v.Err() // parseFilter named the query
	}
	phone := func(name string) string {
		raw, ok := q[name]
		if !ok {
			return ""
		}
		if len(raw) > 1 {
			v.Add(name, "must be given once")
			return ""
		}
		p, err := sms.NormalizePhone(raw[0])
		if err != nil {
			v.Add(name, err.Error())
		}
		return p
	}
	at := func(name string) *time.Time {
		raw, ok := q[name]
		if !ok {
			return nil
		}
		t, err := time.Parse(time.RFC3339Nano, raw[0])
		if err != nil || len(raw) > 1 {
			v.Add(name, "must be one RFC 3339 timestamp")
			return nil
		}
		t = t.UTC() // PostgreSQL refuses offsets past ±15:59
		return &t
	}
	f.From, f.To = phone("from"), phone("to")
	f.Since, f.Until = at("since"), at("until")
	if f.Since != nil && f.Until != nil && !f.Since.Before(*f.Until) {
		v.Add("until", "must be after since")
	}
	return f, v.Err()
}

func (h *Inbound) get(c echo.Context) error {
	id, err := messageID(c)
	if err != nil {
		return err
	}
	m, err := h.store.InboundMessage(c.Request().Context(), accountOf(c), id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, m)
}

// SuppressionsResponse is the body of GET /v1/suppressions, newest first.
type SuppressionsResponse struct {
	Suppressions []sms.Suppression `json:"suppressions"`
	TotalCount   int64             `json:"total_count"`
	NextAfter    *string           `json:"next_after"`
}

// suppressions serves GET /v1/suppressions: size (1 to 1000, default 100)
// and after (the next_after of the previous page).
func (h *Inbound) suppressions(c echo.Context) error {
	var v sms.ValidationError
	f := sms.SuppressionFilter{Size: 100}
	q, err := url.ParseQuery(c.Request().URL.RawQuery)
	if err != nil {
		return sms.Invalid("query", err.Error())
	}
	if raw, ok := q["size"]; ok {
		n, err := strconv.Atoi(raw[0])
		if err != nil || n < 1 || n > 1000 || len(raw) > 1 {
			v.Add("size", "must be one integer from 1 to 1000")
		}
		f.Size = n
	}
	if raw, ok := q["after"]; ok {
		cur, err := sms.ParseSuppressionCursor(raw[0])
		if err != nil || len(raw) > 1 {
			v.Add("after", "must be one cursor returned by this API as next_after")
		}
		f.After = &cur
	}
	if err := v.Err(); err != nil {
		return err
	}
	p, err := h.store.Suppressions(c.Request().Context(), accountOf(c), f)
	if err != nil {
		return err
	}
	resp := SuppressionsResponse{Suppressions: p.Suppressions, TotalCount: p.TotalCount}
	if p.Next != nil {
		s := p.Next.String()
		resp.NextAfter = &s
	}
	return c.JSON(http.StatusOK, resp)
}

// suppressionInput is the body of POST /v1/suppressions: one phone, or a
// list to import.
type suppressionInput struct {
	Phone  *string  `json:"phone"`
	Phones []string `json:"phones"`
	Reason string   `json:"reason"`
}

// SuppressionImportResponse answers POST /v1/suppressions with phones: how
// many were added, and how many were suppressed already (or repeated).
type SuppressionImportResponse struct {
	Added    int64 `json:"added"`
	Existing int64 `json:"existing"`
}

// maxImportViolations is how many bad phones of an import are named.
const maxImportViolations = 100

// suppress serves POST /v1/suppressions: {phone, reason?} answers 201 and
// the entry, or 200 and the entry there was; {phones: [...], reason?}
// (an import of up to sms.MaxSuppressionImport) answers 200 with counts,
// and stores nothing if any phone is invalid.
func (h *Inbound) suppress(c echo.Context) error {
	var in suppressionInput
	if err := readJSONLimit(c, &in, MaxSuppressionImportBytes); err != nil {
		return err
	}
	var v sms.ValidationError
	reason, err := sms.NormalizeReason(in.Reason)
	var ve *sms.ValidationError
	if errors.As(err, &ve) {
		v.Violations = append(v.Violations, ve.Violations...)
	} else if err != nil {
		return err
	}
	ctx, account := c.Request().Context(), accountOf(c)
	switch {
	case in.Phone != nil && in.Phones != nil:
		v.Add("phones", "give phone or phones, not both")
	case in.Phone != nil:
		phone, err := sms.NormalizePhone(*in.Phone)
		if err != nil {
			v.Add("phone", err.Error())
		}
		if err := v.Err(); err != nil {
			return err
		}
		s, created, err := h.store.AddSuppression(ctx, account, phone, reason)
		if err != nil {
			return err
		}
		if created {
			c.Response().Header().Set(echo.HeaderLocation, "/v1/suppressions/"+url.PathEscape(phone))
			return c.JSON(http.StatusCreated, s)
		}
		return c.JSON(http.StatusOK, s)
	case len(in.Phones) == 0:
		v.Add("phone", fmt.Sprintf("required: a phone, or phones (1 to %d) to import", sms.MaxSuppressionImport))
	case len(in.Phones) > sms.MaxSuppressionImport:
		v.Add("phones", fmt.Sprintf("must hold at most %d phones; import larger lists in several requests", sms.MaxSuppressionImport))
	}
	if err := v.Err(); err != nil {
		return err
	}
	phones := make([]string, 0, len(in.Phones))
	seen := make(map[string]bool, len(in.Phones))
	bad := 0
	for i, raw := range in.Phones {
		p, err := sms.NormalizePhone(raw)
		if err != nil {
			if bad++; bad <= maxImportViolations {
				v.Add("phones["+strconv.Itoa(i)+"]", err.Error())
			}
			continue
		}
		if !seen[p] {
			seen[p] = true
			phones = append(phones, p)
		}
	}
	if bad > maxImportViolations {
		v.Add("phones", fmt.Sprintf("%d more phones are invalid", bad-maxImportViolations))
	}
	if err := v.Err(); err != nil {
		return err
	}
	added, err := h.store.AddSuppressions(ctx, account, phones, reason)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, SuppressionImportResponse{Added: added, Existing: int64(len(in.Phones)) - added})
}

// phoneParam reads the :phone of a suppression route.
func phoneParam(c echo.Context) (string, error) {
	p, err := sms.NormalizePhone(pathParam(c, "phone"))
	if err != nil {
		return "", sms.Invalid("phone", err.Error())
	}
	return p, nil
}

func (h *Inbound) suppression(c echo.Context) error {
	phone, err := phoneParam(c)
	if err != nil {
		return err
	}
	s, err := h.store.Suppression(c.Request().Context(), accountOf(c), phone)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, s)
}

// unsuppress serves DELETE /v1/suppressions/{phone}: 204, or 404 when the
// account has no such entry.
func (h *Inbound) unsuppress(c echo.Context) error {
	phone, err := phoneParam(c)
	if err != nil {
		return err
	}
	if err := h.store.RemoveSuppression(c.Request().Context(), accountOf(c), phone); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// keywordSettings serves GET /v1/keyword-settings: the account's keywords
// and replies in effect, defaults included.
func (h *Inbound) keywordSettings(c echo.Context) error {
	s, err := h.store.KeywordSettings(c.Request().Context(), accountOf(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, s.WithDefaults())
}

// setKeywordSettings serves PUT /v1/keyword-settings: the whole settings;
// a field left out or null takes its default. It answers 200 and the
// settings in effect.
func (h *Inbound) setKeywordSettings(c echo.Context) error {
	var in sms.KeywordSettings
	if err := readJSON(c, &in); err != nil {
		return err
	}
	s, err := in.Normalize()
	if err != nil {
		return err
	}
	if err := h.store.SetKeywordSettings(c.Request().Context(), accountOf(c), s); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, s.WithDefaults())
}
