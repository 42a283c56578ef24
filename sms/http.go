package sms

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/smsctl/smsctl/config"
	"github.com/smsctl/smsctl/platform"
)

// MaxOffset is the most messages a list may skip with page: each page
// reads and discards the ones before it, so deep pages cost the database
// ever more. next_after (keyset) pages cost the same at any depth.
const MaxOffset = 100_000

// MaxBodyBytes is the largest request body accepted.
const MaxBodyBytes = 64 << 10

// MaxReportBatchBytes is the largest body of a batch of delivery reports:
// MaxReportBatch reports with the longest failure reasons and traceparents
// fit, each character written as encoding/json writes the widest (6 bytes,
// as \u003c), so a full batch is never refused for its size.
const MaxReportBatchBytes = 8 << 20

// MaxReportBatch is the most reports accepted in one batch request.
const MaxReportBatch = config.MaxReportBatch

// Sender stores one accepted message. *Writer is the implementation.
type Sender interface {
	Insert(ctx context.Context, m NewMessage) (Message, error)
}

// Backlog says how many accepted messages wait for Kafka. *Relay is the
// implementation.
type Backlog interface {
	Backlog() int64
}

// Authenticator maps an API key to its account. *Keys is the implementation.
type Authenticator interface {
	Authenticate(ctx context.Context, key string) (int64, error)
	// Seen reports whether the key's prefix belongs to a key verified
	// before, so cheap to check again.
	Seen(key string) bool
}

// HandlerConfig holds what the HTTP handlers need besides their dependencies.
type HandlerConfig struct {
	// InternalToken authenticates the processor on the internal endpoints.
	InternalToken string
	// MaxBacklog answers 503 to new messages while more wait for Kafka.
	MaxBacklog int64
	// RateLimit and RateBurst bound requests per API key.
	RateLimit float64
	RateBurst int
	// AuthFailureRate and AuthFailureBurst bound failed authentications
	// per client address: past the burst, keys this process has not
	// verified before get 429 without a lookup.
	AuthFailureRate  float64
	AuthFailureBurst int
	// Tracer records spans for applied reports; nil records nothing.
	Tracer trace.TracerProvider
}

// Handler serves the SMS API.
type Handler struct {
	tracer  trace.Tracer
	phones  *PhoneCache
	store   *Store
	sender  Sender
	backlog Backlog
	auth    Authenticator
	limits  *limiter
	// failures counts failed authentications per client address.
	failures *limiter
	cfg      HandlerConfig
	log      zerolog.Logger
	metrics  apiMetrics
}

type apiMetrics struct {
	sent      prometheus.Counter
	failed    *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	accepted  prometheus.Counter
	duplicate prometheus.Counter
}

// NewHandler returns the API handlers; metrics are registered on reg.
func NewHandler(store *Store, sender Sender, backlog Backlog, auth Authenticator, cfg HandlerConfig, log zerolog.Logger, reg prometheus.Registerer) *Handler {
	if cfg.Tracer == nil {
		cfg.Tracer = noop.NewTracerProvider()
	}
	h := &Handler{store: store, sender: sender, backlog: backlog, auth: auth, cfg: cfg, log: log,
		limits: newLimiter(cfg.RateLimit, cfg.RateBurst), failures: newLimiter(cfg.AuthFailureRate, cfg.AuthFailureBurst), tracer: cfg.Tracer.Tracer("github.com/smsctl/smsctl/sms"),
		phones: NewPhoneCache(100_000)}
	h.metrics = apiMetrics{
		accepted: prometheus.NewCounter(prometheus.CounterOpts{Name: "sms_accepted_total", Help: "Messages accepted (202) and committed."}),
		sent:     prometheus.NewCounter(prometheus.CounterOpts{Name: "sms_sent_total", Help: "Messages that reached SENT."}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sms_failed_total", Help: "Messages that reached FAILED, by reason class."},
			[]string{"reason"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sms_processing_duration_seconds", Help: "Time from acceptance to final status.",
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2, 3, 5, 10, 30, 60, 300},
		}, []string{"status"}),
		duplicate: prometheus.NewCounter(prometheus.CounterOpts{Name: "sms_reports_duplicate_total", Help: "Delivery reports for messages already final (changed nothing)."}),
	}
	reg.MustRegister(h.metrics.accepted, h.metrics.sent, h.metrics.failed, h.metrics.duration, h.metrics.duplicate)
	return h
}

// Register mounts the public routes on e and, when internal is not nil,
// the internal routes on internal (which may be e itself).
func (h *Handler) Register(e *echo.Echo, internal *echo.Echo) {
	client := []echo.MiddlewareFunc{h.authenticate, h.rateLimit}
	e.POST("/v1/messages", h.send, client...)
	platform.GET(e, "/v1/messages", h.list, client...)
	platform.GET(e, "/v1/messages/stats", h.stats, client...)
	platform.GET(e, "/v1/messages/failed", h.failed, client...)
	platform.GET(e, "/v1/messages/:id", h.get, client...)
	platform.GET(e, "/v1/users/:phone/messages", h.userMessages, client...)
	if internal != nil {
		internal.POST("/v1/internal/delivery-report", h.deliveryReport, h.internalOnly)
		internal.POST("/v1/internal/delivery-reports", h.deliveryReports, h.internalOnly)
	}
}

func accountOf(c echo.Context) int64 {
	id, _ := c.Get("account").(int64)
	return id
}

func bearer(c echo.Context) (string, bool) {
	scheme, token, ok := strings.Cut(c.Request().Header.Get(echo.HeaderAuthorization), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return "", false
	}
	return strings.TrimSpace(token), true
}

// authenticate finds the request's account. Failed attempts are counted
// per client address: past AuthFailureBurst, a key this process has not
// verified before is refused with 429 before any lookup, so a flood of
// forged keys costs the database nothing, while known keys go on working.
func (h *Handler) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		ip := c.RealIP()
		key, ok := bearer(c)
		if blocked, retry := h.failures.exhausted(ip); blocked && !(ok && h.auth.Seen(key)) {
			return &rateLimitedError{retryAfter: int(math.Ceil(retry.Seconds())), authentication: true}
		}
		if !ok {
			h.failures.allow(ip)
			return fmt.Errorf("%w: missing Authorization: Bearer <api key>", ErrUnauthorized)
		}
		account, err := h.auth.Authenticate(c.Request().Context(), key)
		if err != nil {
			if errors.Is(err, ErrUnauthorized) {
				h.failures.allow(ip)
			}
			return err
		}
		c.Set("account", account)
		c.Set("api_key", key[:min(len(key), 12)])
		return next(c)
	}
}

func (h *Handler) rateLimit(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		key, _ := c.Get("api_key").(string)
		ok, remaining, retry := h.limits.allow(key)
		hdr := c.Response().Header()
		hdr.Set("RateLimit-Limit", strconv.Itoa(h.cfg.RateBurst))
		hdr.Set("RateLimit-Remaining", strconv.Itoa(remaining))
		if !ok {
			secs := int(math.Ceil(retry.Seconds()))
			hdr.Set("RateLimit-Reset", strconv.Itoa(secs))
			return &rateLimitedError{retryAfter: secs}
		}
		return next(c)
	}
}

func (h *Handler) internalOnly(next echo.HandlerFunc) echo.HandlerFunc {
	want := sha256.Sum256([]byte(h.cfg.InternalToken))
	return func(c echo.Context) error {
		token, ok := bearer(c)
		got := sha256.Sum256([]byte(token))
		if !ok || subtle.ConstantTimeCompare(want[:], got[:]) != 1 {
			return fmt.Errorf("%w: the internal endpoints need the internal token", ErrUnauthorized)
		}
		return next(c)
	}
}

// readJSON checks the content type and size, then decodes the body.
func readJSON(c echo.Context, dst any) error { return readJSONLimit(c, dst, MaxBodyBytes) }

// readJSONLimit is readJSON for bodies of at most limit bytes.
func readJSONLimit(c echo.Context, dst any, limit int) error {
	ct := c.Request().Header.Get(echo.HeaderContentType)
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
		return echo.NewHTTPError(http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Type must be application/json, got %q", ct))
	}
	body, err := io.ReadAll(io.LimitReader(c.Request().Body, int64(limit)+1))
	if err != nil {
		return fmt.Errorf("%w: read body: %v", ErrMalformed, err)
	}
	if len(body) > limit {
		return echo.NewHTTPError(http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is larger than %d bytes", limit))
	}
	return DecodeJSON(body, dst)
}

func (h *Handler) send(c echo.Context) error {
	var in SendInput
	var v ValidationError
	// A field of the wrong type is one violation among all the others, so
	// validation goes on with the fields that did decode.
	mistyped := map[string]bool{}
	if err := readJSON(c, &in); err != nil {
		var ve *ValidationError
		if !errors.As(err, &ve) || ve.Violations[0].Field == "body" {
			return err
		}
		for _, x := range ve.Violations {
			mistyped[x.Field] = true
		}
		v.Violations = append(v.Violations, ve.Violations...)
	}
	key := c.Request().Header.Get("Idempotency-Key")
	if _, present := c.Request().Header["Idempotency-Key"]; present && (key == "" || len(key) > 255 || strings.IndexFunc(key, func(r rune) bool { return r < 0x21 || r > 0x7e }) >= 0) {
		v.Add("Idempotency-Key", "must be 1 to 255 visible ASCII characters")
	}
	draft, err := in.ValidateWith(h.phones)
	if err != nil {
		var ve *ValidationError
		if !errors.As(err, &ve) {
			return err
		}
		for _, x := range ve.Violations {
			if !mistyped[x.Field] {
				v.Violations = append(v.Violations, x)
			}
		}
	}
	if err := v.Err(); err != nil {
		return err
	}
	if h.backlog != nil && h.backlog.Backlog() >= h.cfg.MaxBacklog {
		return ErrBacklogFull
	}
	nm := NewMessage{AccountID: accountOf(c), Draft: draft, Traceparent: platform.Traceparent(c.Request().Context())}
	var msg Message
	if key != "" {
		var replayed bool
		msg, replayed, err = h.store.InsertIdempotent(c.Request().Context(), nm, key)
		if replayed {
			c.Response().Header().Set("Idempotent-Replayed", "true")
		}
	} else {
		msg, err = h.sender.Insert(c.Request().Context(), nm)
	}
	if err != nil {
		return err
	}
	if c.Response().Header().Get("Idempotent-Replayed") == "" {
		h.metrics.accepted.Inc()
	}
	c.Response().Header().Set(echo.HeaderLocation, "/v1/messages/"+msg.ID.String())
	return c.JSON(http.StatusAccepted, msg)
}

// parseID reads a message id in the one form this API writes them,
// 8-4-4-4-12 hex digits; uuid.Parse also takes braces, urn:uuid: and
// no dashes.
func parseID(s string) (uuid.UUID, error) {
	if len(s) != 36 {
		return uuid.UUID{}, errors.New("not a UUID in 8-4-4-4-12 form")
	}
	return uuid.Parse(s)
}

func (h *Handler) get(c echo.Context) error {
	raw := c.Param("id")
	if strings.Contains(raw, "/") {
		// echo hands a last :param the rest of an unmatched path, so
		// /v1/messages/{id}/extra lands here: no such route.
		return echo.ErrNotFound
	}
	id, err := parseID(raw)
	if err != nil {
		return &ValidationError{Violations: []Violation{{Field: "id", Message: "must be a UUID"}}}
	}
	msg, err := h.store.Get(c.Request().Context(), accountOf(c), id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, msg)
}

// PageResponse is the body of the list endpoints.
type PageResponse struct {
	Messages   []Message `json:"messages"`
	TotalCount int64     `json:"total_count"`
	Page       int       `json:"page"`
	PageSize   int       `json:"page_size"`
	TotalPages int64     `json:"total_pages"`
	NextAfter  *string   `json:"next_after"`
}

func (h *Handler) list(c echo.Context) error { return h.page(c, "", "") }

func (h *Handler) failed(c echo.Context) error { return h.page(c, StatusFailed, "") }

func (h *Handler) userMessages(c echo.Context) error {
	phone, err := NormalizePhone(pathParam(c, "phone"))
	if err != nil {
		return &ValidationError{Violations: []Violation{{Field: "phone", Message: err.Error()}}}
	}
	return h.page(c, "", phone)
}

// pathParam returns a path parameter decoded exactly once. echo matches on
// the raw path when the request has one (its encoding differs from the
// default, as with %2B for +) and hands its parameters over still encoded;
// otherwise they are decoded already, and decoding again would take
// %252B for a +.
func pathParam(c echo.Context, name string) string {
	v := c.Param(name)
	if c.Request().URL.RawPath == "" {
		return v
	}
	if d, err := url.PathUnescape(v); err == nil {
		return d
	}
	return v
}

func (h *Handler) page(c echo.Context, status Status, phone string) error {
	f, err := parseFilter(c.Request().URL.RawQuery, status == "")
	if err != nil {
		return err
	}
	if status != "" {
		f.Status = status
	}
	f.Phone = phone
	p, err := h.store.List(c.Request().Context(), accountOf(c), f)
	if err != nil {
		return err
	}
	resp := PageResponse{Messages: p.Messages, TotalCount: p.TotalCount, Page: f.Page, PageSize: f.Size,
		TotalPages: (p.TotalCount + int64(f.Size) - 1) / int64(f.Size)}
	if p.Next != nil {
		s := p.Next.String()
		resp.NextAfter = &s
	}
	return c.JSON(http.StatusOK, resp)
}

func parseFilter(rawQuery string, statusAllowed bool) (Filter, error) {
	var v ValidationError
	f := Filter{Size: 20}
	// url.ParseQuery keeps the pairs it could decode and reports the rest:
	// a mangled after=%ZZ must not quietly become the first page.
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		v.Add("query", err.Error())
		return f, v.Err()
	}
	intParam := func(name string, lo, hi int, dst *int) {
		raw, ok := q[name]
		if !ok {
			return
		}
		n, err := strconv.Atoi(raw[0])
		if err != nil || n < lo || n > hi || len(raw) > 1 {
			v.Add(name, fmt.Sprintf("must be one integer from %d to %d", lo, hi))
			return
		}
		*dst = n
	}
	intParam("size", 1, 100, &f.Size)
	intParam("page", 0, MaxOffset, &f.Page)
	if f.Page*f.Size > MaxOffset {
		v.Add("page", fmt.Sprintf("page × size must be at most %d; follow next_after to read further", MaxOffset))
	}
	if raw, ok := q["status"]; ok {
		// Exactly as the spec spells them: "sent" is refused like any other
		// value outside the enum, rather than quietly accepted.
		st := Status(raw[0])
		switch {
		case !statusAllowed:
			v.Add("status", "is not accepted here")
		case st != StatusPending && st != StatusSent && st != StatusFailed || len(raw) > 1:
			v.Add("status", "must be one of PENDING, SENT, FAILED")
		default:
			f.Status = st
		}
	}
	if raw, ok := q["after"]; ok {
		cur, err := ParseCursor(raw[0])
		switch {
		case err != nil || len(raw) > 1:
			v.Add("after", "must be one cursor returned by this API as next_after")
		case f.Page != 0:
			v.Add("page", "must be 0 or absent when after is given")
		default:
			f.After = &cur
		}
	}
	return f, v.Err()
}

func (h *Handler) stats(c echo.Context) error {
	st, err := h.store.Stats(c.Request().Context(), accountOf(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, st)
}

// ReportResult is the answer to a single delivery report.
type ReportResult struct {
	MessageID uuid.UUID `json:"message_id"`
	Status    Status    `json:"status"`
	Applied   bool      `json:"applied"`
}

// reportInput is a delivery report as it arrives. Its fields are strings so
// that a malformed id or timestamp is reported as a violation naming the
// field, like every other invalid field, instead of failing the decode.
type reportInput struct {
	MessageID     string        `json:"message_id"`
	Status        string        `json:"status"`
	FailureReason *string       `json:"failure_reason"`
	ProcessedAt   string        `json:"processed_at"`
	Traceparent   notNullString `json:"traceparent"`
}

// notNullString is a string field that may be left out but not be null.
type notNullString struct {
	value string
	null  bool
}

// UnmarshalJSON takes a JSON string, or notes a null.
func (n *notNullString) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		n.null = true
		return nil
	}
	return json.Unmarshal(b, &n.value)
}

// report parses and validates in; violations are added to v with prefix
// before each field name.
func (in reportInput) report(prefix string, v *ValidationError) DeliveryReport {
	r := DeliveryReport{Status: Status(in.Status), FailureReason: in.FailureReason, Traceparent: in.Traceparent.value}
	bad := map[string]bool{}
	if in.Traceparent.null {
		v.Add(prefix+"traceparent", "must be a string when present, not null")
		bad["traceparent"] = true
	}
	if in.MessageID != "" {
		id, err := parseID(in.MessageID)
		if err != nil {
			v.Add(prefix+"message_id", "must be a UUID")
			bad["message_id"] = true
		}
		r.MessageID = id
	}
	if in.ProcessedAt != "" {
		at, err := time.Parse(time.RFC3339Nano, in.ProcessedAt)
		if err != nil {
			v.Add(prefix+"processed_at", "must be an RFC 3339 timestamp")
			bad["processed_at"] = true
		}
		r.ProcessedAt = at
	}
	var ve *ValidationError
	if errors.As(r.Validate(), &ve) {
		for _, x := range ve.Violations {
			if !bad[x.Field] {
				v.Add(prefix+x.Field, x.Message)
			}
		}
	}
	return r
}

func (h *Handler) deliveryReport(c echo.Context) error {
	var in reportInput
	if err := readJSON(c, &in); err != nil {
		return err
	}
	var v ValidationError
	r := in.report("", &v)
	if err := v.Err(); err != nil {
		return err
	}
	res, err := h.apply(c.Request().Context(), []DeliveryReport{r})
	if err != nil {
		return err
	}
	if res[0].Outcome == ReportNotFound {
		return fmt.Errorf("message %s: %w", r.MessageID, ErrNotFound)
	}
	return c.JSON(http.StatusOK, ReportResult{MessageID: r.MessageID, Status: res[0].Status, Applied: res[0].Outcome == ReportApplied})
}

// BatchReports is the body of the batch delivery-report endpoint.
type BatchReports struct {
	Reports []DeliveryReport `json:"reports"`
}

// BatchResults answers a batch of reports, one result per report in the
// order of the request.
type BatchResults struct {
	Results []AppliedReport `json:"results"`
}

func (h *Handler) deliveryReports(c echo.Context) error {
	var b struct {
		Reports []reportInput `json:"reports"`
	}
	if err := readJSONLimit(c, &b, MaxReportBatchBytes); err != nil {
		return err
	}
	var v ValidationError
	if len(b.Reports) == 0 || len(b.Reports) > MaxReportBatch {
		v.Add("reports", fmt.Sprintf("must hold 1 to %d reports", MaxReportBatch))
	}
	reports := make([]DeliveryReport, len(b.Reports))
	for i, in := range b.Reports {
		reports[i] = in.report(fmt.Sprintf("reports[%d].", i), &v)
	}
	if err := v.Err(); err != nil {
		return err
	}
	res, err := h.apply(c.Request().Context(), reports)
	if err != nil {
		return err
	}
	// The store applies each message once; answer every report in request
	// order, a repeated id after an applied one being a duplicate.
	byID := make(map[uuid.UUID]AppliedReport, len(res))
	for _, r := range res {
		byID[r.MessageID] = r
	}
	out := make([]AppliedReport, len(reports))
	seen := make(map[uuid.UUID]bool, len(reports))
	for i, r := range reports {
		a := byID[r.MessageID]
		if seen[r.MessageID] && a.Outcome == ReportApplied {
			a.Outcome = ReportDuplicate
		}
		seen[r.MessageID] = true
		out[i] = a
	}
	return c.JSON(http.StatusOK, BatchResults{Results: out})
}

// apply applies reports and counts what actually changed.
func (h *Handler) apply(ctx context.Context, reports []DeliveryReport) ([]AppliedReport, error) {
	res, err := h.store.ApplyReports(ctx, reports)
	if err != nil {
		return nil, err
	}
	traces := make(map[uuid.UUID]string, len(reports))
	for _, r := range reports {
		if r.Traceparent != "" {
			traces[r.MessageID] = r.Traceparent
		}
	}
	now := time.Now()
	for _, r := range res {
		// The report joins its message's trace, linked to the batch request.
		if tp, ok := traces[r.MessageID]; ok {
			_, span := h.tracer.Start(platform.WithTraceparent(context.WithoutCancel(ctx), tp), "sms.apply_report",
				trace.WithLinks(trace.LinkFromContext(ctx)),
				trace.WithAttributes(attribute.String("message_id", r.MessageID.String()), attribute.String("outcome", string(r.Outcome))))
			span.End()
		}
		switch r.Outcome {
		case ReportApplied:
			if r.CreatedAt != nil {
				h.metrics.duration.WithLabelValues(string(r.Status)).Observe(now.Sub(*r.CreatedAt).Seconds())
			}
			if r.Status == StatusSent {
				h.metrics.sent.Inc()
			} else {
				h.metrics.failed.WithLabelValues(ReasonClass(r.FailureReason)).Inc()
			}
			h.log.Debug().Str("message_id", r.MessageID.String()).Str("status", string(r.Status)).Msg("delivery report applied")
		case ReportDuplicate:
			h.metrics.duplicate.Inc()
		}
	}
	return res, nil
}

// ReasonClass groups failure reasons into a few label values: the text
// before the first colon when it is a known class, else "other".
func ReasonClass(reason *string) string {
	if reason == nil {
		return "other"
	}
	class, _, _ := strings.Cut(*reason, ":")
	switch class {
	case "permanent", "exhausted", "invalid":
		return class
	}
	return "other"
}
