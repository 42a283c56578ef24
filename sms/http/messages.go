package http

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/smsctl/smsctl/platform"
	"github.com/smsctl/smsctl/sms"
)

func (h *Handler) send(c echo.Context) error {
	body, err := readBody(c, MaxBodyBytes)
	if err != nil {
		return err
	}
	draft, err := h.decodeDraft(body, c.Request().Header)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	key := c.Request().Header.Get("Idempotency-Key")
	nm := sms.NewMessage{AccountID: accountOf(c), Draft: draft, Traceparent: platform.Traceparent(ctx)}
	if h.cfg.OptOuts != nil {
		if err := h.cfg.OptOuts.Check(ctx, nm.AccountID, draft.Recipient); err != nil {
			// A retry of a request accepted before the STOP gets its
			// answer again, not a refusal (the message itself ends FAILED
			// opted_out at the claim).
			if key == "" || !errors.Is(err, sms.ErrOptedOut) {
				return err
			}
			orig, ok, lookupErr := h.store.Replayed(ctx, nm, key)
			if lookupErr != nil || !ok {
				return errors.Join(err, lookupErr)
			}
			c.Response().Header().Set("Idempotent-Replayed", "true")
			c.Response().Header().Set(echo.HeaderLocation, "/v1/messages/"+orig.ID.String())
			return c.JSON(http.StatusAccepted, orig)
		}
	}
	if h.backlog != nil && h.backlog.Backlog() >= h.cfg.MaxBacklog {
		return sms.ErrBacklogFull
	}
	var msg sms.Message
	if key != "" {
		var replayed bool
		msg, replayed, err = h.store.InsertIdempotent(ctx, nm, key)
		if replayed {
			c.Response().Header().Set("Idempotent-Replayed", "true")
		}
	} else {
		msg, err = h.sender.Insert(ctx, nm)
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

// decodeDraft decodes and validates one message. A field of the wrong type
// is one violation among all the others, so validation goes on with the
// fields that did decode. With header, the Idempotency-Key is checked too.
func (h *Handler) decodeDraft(body []byte, header http.Header) (sms.Draft, error) {
	var in sms.SendInput
	var v sms.ValidationError
	mistyped := map[string]bool{}
	if err := DecodeJSON(body, &in); err != nil {
		var ve *sms.ValidationError
		if !errors.As(err, &ve) || ve.Violations[0].Field == "body" {
			return sms.Draft{}, err
		}
		for _, x := range ve.Violations {
			mistyped[x.Field] = true
		}
		v.Violations = append(v.Violations, ve.Violations...)
	}
	if header != nil {
		key := header.Get("Idempotency-Key")
		if _, present := header["Idempotency-Key"]; present && !validIdempotencyKey(key) {
			v.Add("Idempotency-Key", "must be 1 to 255 visible ASCII characters")
		}
	}
	draft, err := in.ValidateWith(h.phones)
	if err != nil {
		var ve *sms.ValidationError
		if !errors.As(err, &ve) {
			return sms.Draft{}, err
		}
		for _, x := range ve.Violations {
			if !mistyped[x.Field] {
				v.Violations = append(v.Violations, x)
			}
		}
	}
	if err := v.Err(); err != nil {
		return sms.Draft{}, err
	}
	return draft, nil
}

func validIdempotencyKey(key string) bool {
	return key != "" && len(key) <= 255 && strings.IndexFunc(key, func(r rune) bool { return r < 0x21 || r > 0x7e }) < 0
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

// messageID reads the :id of a message route.
func messageID(c echo.Context) (uuid.UUID, error) {
	raw := c.Param("id")
	if strings.Contains(raw, "/") {
		// echo hands a last :param the rest of an unmatched path, so
		// /v1/messages/{id}/extra lands here: no such route.
		return uuid.UUID{}, echo.ErrNotFound
	}
	id, err := parseID(raw)
	if err != nil {
		return uuid.UUID{}, sms.Invalid("id", "must be a UUID")
	}
	return id, nil
}

func (h *Handler) get(c echo.Context) error {
	// The router gives a GET of the batch route to /v1/messages/:id.
	if c.Param("id") == "batch" {
		c.Response().Header().Set(echo.HeaderAllow, http.MethodPost)
		return echo.ErrMethodNotAllowed
	}
	id, err := messageID(c)
	if err != nil {
		return err
	}
	msg, err := h.store.Get(c.Request().Context(), accountOf(c), id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, msg)
}

// PageResponse is the body of the list endpoints.
type PageResponse struct {
	Messages   []sms.Message `json:"messages"`
	TotalCount int64         `json:"total_count"`
	Page       int           `json:"page"`
	PageSize   int           `json:"page_size"`
	TotalPages int64         `json:"total_pages"`
	NextAfter  *string       `json:"next_after"`
}

func (h *Handler) list(c echo.Context) error { return h.page(c, "", "") }

func (h *Handler) failed(c echo.Context) error { return h.page(c, sms.StatusFailed, "") }

func (h *Handler) userMessages(c echo.Context) error {
	phone, err := sms.NormalizePhone(pathParam(c, "phone"))
	if err != nil {
		return &sms.ValidationError{Violations: []sms.Violation{{Field: "phone", Message: err.Error()}}}
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

func (h *Handler) page(c echo.Context, status sms.Status, phone string) error {
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

func parseFilter(rawQuery string, statusAllowed bool) (sms.Filter, error) {
	var v sms.ValidationError
	f := sms.Filter{Size: 20}
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
	intParam("page", 0, sms.MaxOffset, &f.Page)
	if f.Page*f.Size > sms.MaxOffset {
		v.Add("page", fmt.Sprintf("page × size must be at most %d; follow next_after to read further", sms.MaxOffset))
	}
	if raw, ok := q["status"]; ok {
		// Exactly as the spec spells them: "sent" is refused like any other
		// value outside the enum, rather than quietly accepted.
		st, err := sms.ParseStatus(raw[0])
		switch {
		case !statusAllowed:
			v.Add("status", "is not accepted here")
		case err != nil:
			v.Add("status", err.Error())
		case len(raw) > 1:
			v.Add("status", "must be given once")
		default:
			f.Status = st
		}
	}
	if raw, ok := q["after"]; ok {
		cur, err := sms.ParseCursor(raw[0])
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
