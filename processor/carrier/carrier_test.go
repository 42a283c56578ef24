package carrier

import (
	"slices"
	"testing"
)

// TestIDForms checks that an id written in hex in one place and in
// decimal in another is found under either, while the id as given always
// comes first.
func TestIDForms(t *testing.T) {
	for _, tc := range []struct {
		id   string
		want []string
	}{
		{"1a2b", []string{"1A2B", "6699"}},
		{"6699", []string{"6699", "1A2B"}},
		{" 0006699 ", []string{"6699", "1A2B"}},
		{"Smsc2001", []string{"SMSC2001"}},
		{"0", []string{"0", "0"}},
		{"abc-123", []string{"ABC-123"}},
	} {
		if got := IDForms(tc.id); !slices.Equal(got, tc.want) {
			t.Errorf("IDForms(%q) = %v, want %v", tc.id, got, tc.want)
		}
	}
	// The forms of the hex and the decimal spelling meet.
	hex, dec := IDForms("1A2B"), IDForms("6699")
	if hex[0] != dec[1] || dec[0] != hex[1] {
		t.Errorf("hex %v and decimal %v forms do not meet", hex, dec)
	}
}
