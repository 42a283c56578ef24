package sms

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/nyaruka/phonenumbers"
)

// slowE164 is NormalizePhone without the fast path.
func slowE164(plusDigits string) (string, bool) {
	num, err := phonenumbers.Parse(plusDigits, "")
	if err != nil || phonenumbers.IsPossibleNumberWithReason(num) != phonenumbers.IS_POSSIBLE {
		return "", false
	}
	return phonenumbers.Format(num, phonenumbers.E164), true
}

// TestFastE164AgreesWithParse checks, for numbers of every country calling
// code and every national length, leading zeros and trunk prefixes
// included, that whatever the fast path accepts, Parse accepts and formats
// the same way; and that the fast path does take the common case.
func TestFastE164AgreesWithParse(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	checked, fast := 0, 0
	for cc := 1; cc < 1000; cc++ {
		if phonenumbers.GetRegionCodeForCountryCode(cc) == phonenumbers.UNKNOWN_REGION {
			continue
		}
		for n := 1; n <= 15-len(strconv.Itoa(cc)); n++ {
			for range 40 {
				var b strings.Builder
				b.WriteString("+" + strconv.Itoa(cc))
				for i := range n {
					d := rng.IntN(10)
					if i == 0 && rng.IntN(3) == 0 {
						d = rng.IntN(2) // trunk prefixes 0 and 1, leading zeros
					}
					b.WriteByte(byte('0' + d))
				}
				in := b.String()
				checked++
				got, ok := fastE164(in)
				if !ok {
					continue
				}
				fast++
				want, wantOK := slowE164(in)
				if !wantOK || got != want {
					t.Errorf("fastE164(%q) = %q; Parse says %q (possible: %v)", in, got, want, wantOK)
				}
			}
		}
	}
	if fast < checked/20 {
		t.Errorf("the fast path took %d of %d numbers; it should take the common case", fast, checked)
	}
	for _, in := range []string{"+14155552671", "+442079460958", "+33123456789", "+390612345678", "+819012345678"} {
		if got, ok := fastE164(in); !ok || got != in {
			t.Errorf("fastE164(%q) = %q, %v; want it taken", in, got, ok)
		}
	}
	t.Logf("%d numbers, %d on the fast path", checked, fast)
}

// BenchmarkNormalizePhoneVaried normalizes many different numbers, as the
// recipients of real traffic are.
func BenchmarkNormalizePhoneVaried(b *testing.B) {
	rng := rand.New(rand.NewPCG(3, 4))
	nums := make([]string, 1024)
	for i := range nums {
		nums[i] = "+1415" + strconv.Itoa(2000000+rng.IntN(7999999))
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := NormalizePhone(nums[i%len(nums)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
