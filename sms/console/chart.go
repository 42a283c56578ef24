package console

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/smsctl/smsctl/sms"
)

// The chart of the last hour: one bar per minute of messages accepted then,
// split by where they stand now. Drawn as SVG on the server (no script, and
// the CSP allows no inline style: colours come from classes).
const (
	chartMinutes = 60
	chartWidth   = 600
	chartHeight  = 160
	barGap       = 2
)

// chartPart is one class of outcome, bottom to top.
type chartPart struct {
	Key, Label string
}

var chartParts = []chartPart{
	{"ok", "sent or delivered"},
	{"bad", "failed, undelivered or expired"},
	{"wait", "scheduled or pending"},
	{"gone", "canceled"},
}

func partOf(s sms.Status) int {
	switch {
	case s.Succeeded():
		return 0
	case s.Unsuccessful():
		return 1
	case s == sms.StatusCanceled:
		return 3
	}
	return 2
}

// chart is the chart as the template draws it.
type chart struct {
	Bars  []bar
	Max   int64
	Total int64
	// Parts are the totals of the hour per part.
	Parts []partTotal
	// SuccessRate is the share of sent or delivered among the messages of
	// the hour that reached an outcome; HasRate is false when none did.
	SuccessRate float64
	HasRate     bool
	// PerMinute is the average over the minutes covered.
	PerMinute float64
	// Since is when the data starts: an hour ago, or later when the chart
	// read its limit of messages (Truncated).
	Since     time.Time
	Truncated bool
	At        time.Time
	Width     int
	Height    int
}

type partTotal struct {
	chartPart
	N int64
}

// bar is one minute.
type bar struct {
	X, W   int
	Label  string
	Total  int64
	Counts [4]int64
	Rects  []rect
}

type rect struct {
	Class     string
	Y, Height int
}

func buildChart(rows []minuteCount, now time.Time) chart {
	ch := chart{At: now, Since: now.Add(-time.Hour), Width: chartWidth, Height: chartHeight}
	ch.Bars = make([]bar, chartMinutes)
	perAccount := map[int64]int64{}
	oldest := map[int64]time.Time{}
	for _, r := range rows {
		perAccount[r.Account] += r.N
		if o, ok := oldest[r.Account]; !ok || r.Oldest.Before(o) {
			oldest[r.Account] = r.Oldest
		}
		if r.Ago < 0 || r.Ago >= chartMinutes {
			continue
		}
		b := &ch.Bars[chartMinutes-1-r.Ago]
		b.Counts[partOf(r.Status)] += r.N
		b.Total += r.N
	}
	for acc, n := range perAccount {
		if n >= chartLimit && oldest[acc].After(ch.Since) {
			ch.Truncated, ch.Since = true, oldest[acc]
		}
	}
	var parts [4]int64
	for i := range ch.Bars {
		b := &ch.Bars[i]
		ch.Total += b.Total
		ch.Max = max(ch.Max, b.Total)
		for p, n := range b.Counts {
			parts[p] += n
		}
	}
	for i, p := range chartParts {
		ch.Parts = append(ch.Parts, partTotal{chartPart: p, N: parts[i]})
	}
	if done := parts[0] + parts[1]; done > 0 {
		ch.HasRate = true
		ch.SuccessRate = float64(parts[0]) * 100 / float64(done)
	}
	if mins := now.Sub(ch.Since).Minutes(); mins > 0 {
		ch.PerMinute = float64(ch.Total) / mins
	}
	scale := niceCeil(ch.Max)
	ch.Max = scale
	w := chartWidth / chartMinutes
	for i := range ch.Bars {
		b := &ch.Bars[i]
		ago := chartMinutes - 1 - i
		b.X, b.W = i*w, w-barGap
		b.Label = fmt.Sprintf("%s: %d accepted", now.Add(-time.Duration(ago)*time.Minute).UTC().Format("15:04"), b.Total)
		y := chartHeight
		for p, n := range b.Counts {
			if n == 0 || scale == 0 {
				continue
			}
			h := int(float64(n) * chartHeight / float64(scale))
			if h < 1 {
				h = 1
			}
			y -= h
			b.Rects = append(b.Rects, rect{Class: "bar-" + chartParts[p].Key, Y: y, Height: h})
		}
	}
	return ch
}

// niceCeil rounds n up to 1, 2 or 5 times a power of ten.
func niceCeil(n int64) int64 {
	if n <= 0 {
		return 0
	}
	for p := int64(1); ; p *= 10 {
		for _, m := range []int64{1, 2, 5} {
			if m*p >= n {
				return m * p
			}
		}
	}
}

// chartCache keeps each scope's chart for chartTTL: the overview refreshes
// every few seconds in every open tab, the chart needs to only every so
// often.
type chartCache struct {
	mu sync.Mutex
	by map[int64]cachedChart
}

type cachedChart struct {
	ch    chart
	until time.Time
}

const chartTTL = 10 * time.Second

func newChartCache() *chartCache { return &chartCache{by: make(map[int64]cachedChart)} }

func (c *Console) chart(ctx context.Context, scope int64) (chart, error) {
	now := c.now()
	c.charts.mu.Lock()
	cached, ok := c.charts.by[scope]
	c.charts.mu.Unlock()
	if ok && now.Before(cached.until) {
		return cached.ch, nil
	}
	rows, err := c.read.recentByMinute(ctx, scope, now)
	if err != nil {
		return chart{}, err
	}
	ch := buildChart(rows, now)
	c.charts.mu.Lock()
	if len(c.charts.by) > 1000 {
		clear(c.charts.by)
	}
	c.charts.by[scope] = cachedChart{ch: ch, until: now.Add(chartTTL)}
	c.charts.mu.Unlock()
	return ch, nil
}
