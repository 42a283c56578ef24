package processor

import (
	"time"
)

// Priority lanes (ADR-007): the processor consumes one topic per priority
// in one group and prefers higher lanes while they have work: a lower lane
// is paused while a higher one had records in the last poll or has
// messages in flight, and while lower lanes hold more than their share of
// the in-flight slots (so that a high message never waits for a slot
// behind a full window of low ones). A paused lane is let through for one
// poll at least every laneStarveAfter, so that it is never starved for
// good.

// laneStarveAfter is the longest a lower lane is held back.
const laneStarveAfter = 2 * time.Second

// lowerLanesShare is the share of MaxInFlight the lanes below the highest
// may take together.
const lowerLanesShare = 0.8

// lanes returns the request topics, highest priority first.
func lanes(cfg Config) []string {
	if len(cfg.Lanes) > 0 {
		return cfg.Lanes
	}
	return []string{cfg.Topic}
}

// laneState is what the poll loop knows of each lane.
type laneState struct {
	topics   []string
	paused   []bool
	heldFrom []time.Time // since when each lane has been held back
	polled   []int       // records of each lane in the last poll
}

func newLaneState(topics []string) *laneState {
	return &laneState{topics: topics, paused: make([]bool, len(topics)), heldFrom: make([]time.Time, len(topics)),
		polled: make([]int, len(topics))}
}

// adjustLanes pauses and resumes lanes after a poll.
func (p *Processor) adjustLanes(ls *laneState, polledByTopic map[string]int) {
	if len(ls.topics) < 2 {
		return
	}
	inFlight := make(map[string]int, len(ls.topics))
	p.mu.Lock()
	for tp, st := range p.parts {
		inFlight[tp.topic] += st.inFlight
	}
	p.mu.Unlock()
	now := time.Now()
	lower := 0 // in flight on lanes below the highest
	for _, t := range ls.topics[1:] {
		lower += inFlight[t]
	}
	lowerFull := float64(lower) >= lowerLanesShare*float64(p.cfg.MaxInFlight)
	higherBusy := false
	var pause, resume []string
	for i, t := range ls.topics {
		ls.polled[i] = polledByTopic[t]
		hold := i > 0 && (higherBusy || lowerFull)
		switch {
		case !hold:
			ls.heldFrom[i] = time.Time{}
		case ls.heldFrom[i].IsZero():
			ls.heldFrom[i] = now
		case now.Sub(ls.heldFrom[i]) > laneStarveAfter:
			hold = false // one poll's worth for a lane held too long
			ls.heldFrom[i] = now
		}
		if hold != ls.paused[i] {
			ls.paused[i] = hold
			if hold {
				pause = append(pause, t)
			} else {
				resume = append(resume, t)
			}
		}
		if ls.polled[i] > 0 || inFlight[t] > 0 {
			higherBusy = true
		}
	}
	if len(pause) > 0 {
		p.cl.PauseFetchTopics(pause...)
	}
	if len(resume) > 0 {
		p.cl.ResumeFetchTopics(resume...)
	}
}
