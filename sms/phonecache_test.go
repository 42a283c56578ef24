package sms

import "testing"

func TestPhoneCacheAnswersAsWithout(t *testing.T) {
	t.Parallel()
	c := NewPhoneCache(3)
	inputs := []string{"+1 (415) 555-2671", "+44 20 7946 0958", "12345", "Acme Bank", "+999 123 456", "ABCDEFGHIJKL", "+1 (415) 555-2671", "Acme Bank"}
	for round := range 2 { // the second round answers from the cache (or after it started over)
		for _, in := range inputs {
			wantP, wantPErr := NormalizePhone(in)
			gotP, gotPErr := c.Phone(in)
			wantS, wantSErr := NormalizeSender(in)
			gotS, gotSErr := c.Sender(in)
			if gotP != wantP || gotPErr != wantPErr || gotS != wantS || gotSErr != wantSErr {
				t.Errorf("round %d, %q: cache says (%q, %v) / (%q, %v), want (%q, %v) / (%q, %v)",
					round, in, gotP, gotPErr, gotS, gotSErr, wantP, wantPErr, wantS, wantSErr)
			}
		}
	}
	if n := len(c.phones); n > 3 {
		t.Errorf("cache holds %d phones, bound is 3", n)
	}
	var none *PhoneCache
	if got, err := none.Phone("+1 415 555 2671"); err != nil || got != "+14155552671" {
		t.Errorf("nil cache: %q, %v", got, err)
	}
}
