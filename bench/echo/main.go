// Command echo is the benchmark's baseline: the smallest server that does
// what POST /v1/messages must do at the least, decode the same JSON body and
// answer 202 with a message document, without validating deeply, storing or
// queueing anything. bench/run.sh drives it with the same wrk command as the
// API, in the same run, so every API figure can be read as a ratio to it.
//
//	go run ./bench/echo -addr :18090
package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/labstack/echo/v4"
)

type sendInput struct {
	Sender    string `json:"sender"`
	Recipient string `json:"recipient"`
	Text      string `json:"text"`
}

// message has the shape and roughly the size of the API's answer.
type message struct {
	ID            string    `json:"id"`
	Sender        string    `json:"sender"`
	Recipient     string    `json:"recipient"`
	Text          string    `json:"text"`
	Status        string    `json:"status"`
	FailureReason *string   `json:"failure_reason"`
	Encoding      string    `json:"encoding"`
	Segments      int       `json:"segments"`
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func main() {
	addr := flag.String("addr", ":18090", "listen address")
	flag.Parse()

	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.GET("/readyz", func(c echo.Context) error { return c.String(http.StatusOK, "ok") })
	e.POST("/v1/messages", func(c echo.Context) error {
		body, err := io.ReadAll(io.LimitReader(c.Request().Body, 64<<10))
		if err != nil {
			return echo.NewHTTPError(http.StatusBadRequest, err.Error())
		}
		var in sendInput
		if err := json.Unmarshal(body, &in); err != nil {
			return echo.NewHTTPError(http.StatusBadRequest, err.Error())
		}
		if in.Sender == "" || in.Recipient == "" || in.Text == "" {
			return echo.NewHTTPError(http.StatusUnprocessableEntity, "sender, recipient and text are required")
		}
		now := time.Now().UTC()
		m := message{ID: newID(), Sender: in.Sender, Recipient: in.Recipient, Text: in.Text,
			Status: "PENDING", Encoding: "GSM-7", Segments: 1, CreatedAt: now, UpdatedAt: now}
		c.Response().Header().Set(echo.HeaderLocation, "/v1/messages/"+m.ID)
		return c.JSON(http.StatusAccepted, m)
	})
	if err := e.Start(*addr); err != nil && err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, "echo:", err)
		os.Exit(1)
	}
}
