package sms

import "sync"

// PhoneCache remembers what NormalizePhone and NormalizeSender answered.
// Parsing with libphonenumber is the costliest step of validating a send
// (its regular expressions), and senders and frequent recipients repeat.
// A nil cache remembers nothing.
type PhoneCache struct {
	max int

	mu     sync.Mutex
	phones map[string]normalized
	sender map[string]normalized
}

type normalized struct {
	value string
	err   error
}

// NewPhoneCache returns a cache of at most max entries per kind; when full
// it starts over, which bounds memory without bookkeeping per entry.
func NewPhoneCache(max int) *PhoneCache {
	return &PhoneCache{max: max, phones: make(map[string]normalized), sender: make(map[string]normalized)}
}

// Phone is NormalizePhone, remembered.
func (c *PhoneCache) Phone(raw string) (string, error) {
	if c == nil {
		return NormalizePhone(raw)
	}
	return c.lookup(c.phones, raw, NormalizePhone)
}

// Sender is NormalizeSender, remembered.
func (c *PhoneCache) Sender(raw string) (string, error) {
	if c == nil {
		return NormalizeSender(raw)
	}
	return c.lookup(c.sender, raw, NormalizeSender)
}

func (c *PhoneCache) lookup(m map[string]normalized, raw string, fn func(string) (string, error)) (string, error) {
	c.mu.Lock()
	n, ok := m[raw]
	c.mu.Unlock()
	if ok {
		return n.value, n.err
	}
	v, err := fn(raw)
	if len(raw) <= 64 { // no point keeping absurd inputs
		c.mu.Lock()
		if len(m) >= c.max {
			clear(m)
		}
		m[raw] = normalized{v, err}
		c.mu.Unlock()
	}
	return v, err
}
