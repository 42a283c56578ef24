package smpp

import (
	"sync"
	"time"
)

// maxIncomplete bounds the concatenated inbound messages waiting for parts.
const maxIncomplete = 10000

// partKey identifies a concatenated inbound message.
type partKey struct {
	from, to string
	ref      uint32
	total    byte
}

// partial is the parts of one concatenated message received so far.
type partial struct {
	parts    [][]byte // by part number - 1; nil until received
	have     int
	coding   byte // the first part's
	firstSeq int32
	first    time.Time
}

// assembled is a complete concatenated message.
type assembled struct {
	octets   []byte
	coding   byte
	firstSeq int32
	first    time.Time
}

// join puts the parts together in order: a GSM escape or a UTF-16
// surrogate pair cut between two parts comes whole again before decoding.
func (p *partial) join() assembled {
	var b []byte
	for _, part := range p.parts {
		b = append(b, part...)
	}
	return assembled{octets: b, coding: p.coding, firstSeq: p.firstSeq, first: p.first}
}

// reassembler gathers the parts of concatenated inbound messages from every
// bind (an SMSC may send the parts over different binds).
type reassembler struct {
	timeout time.Duration
	mu      sync.Mutex
	pending map[partKey]*partial
}

func newReassembler(timeout time.Duration) *reassembler {
	return &reassembler{timeout: timeout, pending: make(map[partKey]*partial)}
}

type partState int

const (
	partBuffered partState = iota
	partComplete
	partRefused
)

// add records part number part of key's message and returns the message
// once every part is in. The message stays until remove, so that a last
// part sent again after the sink failed completes it again; a part
// received twice replaces the first copy. dropped counts the incomplete
// messages given up on for waiting too long.
func (r *reassembler) add(key partKey, part byte, octets []byte, coding byte, seq int32, at time.Time) (msg assembled, st partState, dropped int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	dropped = r.expire(at)
	p, ok := r.pending[key]
	if !ok {
		if len(r.pending) >= maxIncomplete {
			return msg, partRefused, dropped
		}
		p = &partial{parts: make([][]byte, key.total), first: at}
		r.pending[key] = p
	}
	if part == 0 || int(part) > len(p.parts) {
		// A part number outside the header's own count: ignored.
		return msg, partBuffered, dropped
	}
	if p.parts[part-1] == nil {
		p.have++
	}
	p.parts[part-1] = append([]byte{}, octets...)
	if part == 1 {
		p.coding, p.firstSeq = coding, seq
	}
	if p.have < len(p.parts) {
		return msg, partBuffered, dropped
	}
	return p.join(), partComplete, dropped
}

func (r *reassembler) remove(key partKey) {
	r.mu.Lock()
	delete(r.pending, key)
	r.mu.Unlock()
}

// expire drops the messages that waited longer than the timeout for a
// part, and counts them.
func (r *reassembler) expire(now time.Time) int {
	n := 0
	for k, p := range r.pending {
		if now.Sub(p.first) > r.timeout {
			delete(r.pending, k)
			n++
		}
	}
	return n
}
