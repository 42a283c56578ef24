package webhook

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/smsctl/smsctl/sms"
)

// fakeLookup resolves names from a table, as a DNS server an attacker
// controls would.
func fakeLookup(table map[string]string) func(context.Context, string) ([]netip.Addr, error) {
	return func(_ context.Context, host string) ([]netip.Addr, error) {
		ip, ok := table[host]
		if !ok {
			return nil, errors.New("no such host")
		}
		return []netip.Addr{netip.MustParseAddr(ip)}, nil
	}
}

// TestSSRFRefusedAtCreation: URLs that reach internal addresses, directly
// or through a name, are refused with 422 naming the url, unless private
// addresses are allowed.
func TestSSRFRefusedAtCreation(t *testing.T) {
	t.Parallel()
	lookup := fakeLookup(map[string]string{
		"hooks.example.com": "93.184.216.34", "rebind.example.com": "127.0.0.1", "inside.example.com": "10.1.2.3",
		"mapped.example.com": "::ffff:127.0.0.1", "localhost": "127.0.0.1",
	})
	tests := []struct {
		url string
		why string // "" when accepted
	}{
		{"https://hooks.example.com/sms", ""},
		{"https://93.184.216.34:8443/sms", ""},
		{"https://[2606:2800:220:1:248:1893:25c8:1946]/sms", ""},
		{"http://hooks.example.com/sms", "must use https"},
		{"https://127.0.0.1/hook", "loopback"},
		{"https://localhost/hook", "loopback"},
		{"https://rebind.example.com/hook", "loopback"},
		{"https://10.0.0.1/hook", "private"},
		{"https://inside.example.com/hook", "private"},
		{"https://192.168.1.10/hook", "private"},
		{"https://172.16.0.1/hook", "private"},
		{"https://169.254.169.254/latest/meta-data", "metadata"},
		{"https://[fd00:ec2::254]/", "metadata"},
		{"https://[::1]/hook", "loopback"},
		{"https://[::ffff:127.0.0.1]/hook", "IPv4-mapped"},
		{"https://mapped.example.com/hook", "IPv4-mapped"},
		{"https://0.0.0.0/hook", "unspecified"},
		{"https://[::]/hook", "unspecified"},
		{"https://100.64.0.1/hook", "carrier-grade NAT"},
		{"https://[fe80::1]/hook", "link-local"},
		{"https://169.254.1.1/hook", "link-local"},
		{"https://224.0.0.1/hook", "multicast"},
		{"https://[fc00::1]/hook", "private"},
		{"https://nowhere.example.com/hook", "does not resolve"},
	}
	g := Guard{Lookup: lookup}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			t.Parallel()
			err := g.CheckURL(context.Background(), tt.url)
			if tt.why == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var e *sms.Error
			if !errors.As(err, &e) || e.Code != sms.CodeUnprocessable || e.Kind != KindURLRefused {
				t.Fatalf("got %v, want a 422 refusal", err)
			}
			if !strings.Contains(e.Message, tt.url) || !strings.Contains(e.Message, tt.why) {
				t.Errorf("message %q should name the url and say %q", e.Message, tt.why)
			}
			// Allowed in development.
			if err := (Guard{AllowPrivate: true, Lookup: lookup}).CheckURL(context.Background(), tt.url); err != nil {
				t.Errorf("with AllowPrivate: %v", err)
			}
		})
	}
}

// TestSSRFMalformedURL: what is not an absolute http(s) URL is a
// validation error naming the url field.
func TestSSRFMalformedURL(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{"", "hooks.example.com/x", "ftp://hooks.example.com/", "https:///x", "https://h.example.com/a b",
		"https://h.example.com/#frag", "mailto:a@example.com", "https://:443/"} {
		err := (Guard{AllowPrivate: true}).CheckURL(context.Background(), raw)
		var ve *sms.ValidationError
		if !errors.As(err, &ve) || ve.Violations[0].Field != "url" {
			t.Errorf("%q: %v, want a violation of url", raw, err)
		}
	}
}

// TestSSRFControl: the check of the address a socket is about to connect
// to refuses internal ones, whatever name led there.
func TestSSRFControl(t *testing.T) {
	t.Parallel()
	g := Guard{}
	for addr, ok := range map[string]bool{"127.0.0.1:443": false, "[::1]:443": false, "10.0.0.8:80": false,
		"[::ffff:127.0.0.1]:443": false, "169.254.169.254:80": false, "93.184.216.34:443": true} {
		err := g.control("tcp", addr, nil)
		var re *RefusedError
		if ok != (err == nil) || (!ok && !errors.As(err, &re)) {
			t.Errorf("control(%s) = %v, want allowed %v", addr, err, ok)
		}
	}
}
