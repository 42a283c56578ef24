package http

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/smsctl/smsctl/sms"
)

// EventsResponse is the body of GET /v1/messages/{id}/events.
type EventsResponse struct {
	Events []sms.Event `json:"events"`
}

func (h *Handler) events(c echo.Context) error {
	id, err := messageID(c)
	if err != nil {
		return err
	}
	evs, err := h.store.Events(c.Request().Context(), accountOf(c), id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, EventsResponse{Events: evs})
}

func (h *Handler) cancel(c echo.Context) error {
	id, err := messageID(c)
	if err != nil {
		return err
	}
	msg, err := h.store.Cancel(c.Request().Context(), accountOf(c), id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, msg)
}

func (h *Handler) retry(c echo.Context) error {
	id, err := messageID(c)
	if err != nil {
		return err
	}
	msg, err := h.store.Retry(c.Request().Context(), accountOf(c), id)
	if err != nil {
		return err
	}
	if h.backlog != nil {
		h.backlog.Wake()
	}
	c.Response().Header().Set(echo.HeaderLocation, "/v1/messages/"+msg.ID.String())
	return c.JSON(http.StatusAccepted, msg)
}

// DispatchRequest is the body of POST /v1/internal/dispatch.
type DispatchRequest struct {
	Claims []claimBody `json:"claims"`
}

// claimBody is one claim as sent: pointers, so that a missing or null
// message_id is refused rather than read as the nil UUID.
type claimBody struct {
	MessageID *uuid.UUID `json:"message_id"`
	Retry     *int       `json:"retry"`
}

// DispatchResponse answers each claim, in the order of the request.
type DispatchResponse struct {
	Results []sms.ClaimResult `json:"results"`
}

// MaxClaims is the most claims in one dispatch request.
const MaxClaims = sms.MaxClaims

func (h *Handler) dispatch(c echo.Context) error {
	var req DispatchRequest
	if err := readJSONLimit(c, &req, 1<<20); err != nil {
		return err
	}
	var v sms.ValidationError
	if len(req.Claims) == 0 || len(req.Claims) > MaxClaims {
		v.Add("claims", "must hold 1 to 5000 claims")
	}
	claims := make([]sms.Claim, len(req.Claims))
	for i, cl := range req.Claims {
		retry := 0 // absent or null: the first try, as the document says
		if cl.Retry != nil {
			retry = *cl.Retry
		}
		if cl.MessageID == nil || *cl.MessageID == (uuid.UUID{}) || retry < 0 || retry > sms.MaxRetry {
			v.Add("claims["+strconv.Itoa(i)+"]", fmt.Sprintf("needs a message_id and a retry of 0 to %d", sms.MaxRetry))
			continue
		}
		claims[i] = sms.Claim{MessageID: *cl.MessageID, Retry: retry}
	}
	if err := v.Err(); err != nil {
		return err
	}
	res, err := h.store.Dispatch(c.Request().Context(), claims)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, DispatchResponse{Results: res})
}
