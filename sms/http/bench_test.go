package http

import (
	"testing"

	"github.com/smsctl/smsctl/sms"
)

// BenchmarkValidate measures decoding and validating one send request.
func BenchmarkValidate(b *testing.B) {
	body := []byte(`{"sender":"+1 (415) 555-0100","recipient":"+44 20 7946 0958","text":"Your code is 123456. It expires in 10 minutes."}`)
	b.ReportAllocs()
	for b.Loop() {
		var in sms.SendInput
		if err := DecodeJSON(body, &in); err != nil {
			b.Fatal(err)
		}
		if _, err := in.Validate(); err != nil {
			b.Fatal(err)
		}
	}
}
