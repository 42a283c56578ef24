package console

import (
	"context"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/smsctl/smsctl/sms"
)

type overviewData struct {
	Counts []statusCount
	Stats  sms.Stats
	Chart  chart
	// Backlog is this replica's outbox backlog (operators only).
	Backlog    int64
	HasBacklog bool
	// Webhook queue of the scope.
	WebhookPending int64
	WebhookOldest  time.Time
	HasWebhooks    bool
	Proc           procStats
	At             time.Time
}

type statusCount struct {
	Status sms.Status
	N      int64
}

func (c *Console) overviewData(ctx context.Context, s *session) (overviewData, error) {
	var d overviewData
	var err error
	scope := s.scope()
	if scope == 0 {
		d.Stats, err = c.read.countsAll(ctx)
	} else {
		d.Stats, err = c.d.Store.Stats(ctx, scope)
	}
	if err != nil {
		return d, err
	}
	for _, st := range sms.Statuses {
		d.Counts = append(d.Counts, statusCount{st, d.Stats.ByStatus[st]})
	}
	if d.Chart, err = c.chart(ctx, scope); err != nil {
		return d, err
	}
	if d.WebhookPending, d.WebhookOldest, d.HasWebhooks, err = c.read.webhookQueue(ctx, scope); err != nil {
		return d, err
	}
	if s.operator() {
		if c.d.Backlog != nil {
			d.Backlog, d.HasBacklog = c.d.Backlog.Backlog(), true
		}
		d.Proc = c.procs.stats(ctx, c.now())
	}
	d.At = c.now()
	return d, nil
}

func (c *Console) overview(ec echo.Context) error {
	d, err := c.overviewData(ec.Request().Context(), sessionOf(ec))
	if err != nil {
		return c.fail(ec, err)
	}
	return c.page(ec, "overview", "Overview", "overview", d)
}

func (c *Console) overviewLive(ec echo.Context) error {
	d, err := c.overviewData(ec.Request().Context(), sessionOf(ec))
	if err != nil {
		return c.fail(ec, err)
	}
	return c.renderLive(ec, "overview", c.liveView(ec, d))
}
