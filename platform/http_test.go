package platform

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/rs/zerolog"
)

// TestServerLimits checks the limits that protect the server before any
// handler runs: oversized headers are refused, and a client that sends its
// headers too slowly (slowloris) is cut off.
func TestServerLimits(t *testing.T) {
	e := NewEcho(zerolog.Nop(), func(error) *Problem { return nil })
	e.GET("/", func(c echo.Context) error { return c.String(http.StatusOK, "ok") })
	l, err := NewHTTPListener("127.0.0.1:0", e, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer l.Stop()
	url := "http://" + l.Addr().String() + "/"

	// Past the limits a handler answers: problem+json like every error.
	for _, tc := range []struct {
		name   string
		url    string
		header string
		code   int
	}{
		{"100 KiB header", url, strings.Repeat("x", 100<<10), http.StatusRequestHeaderFieldsTooLarge},
		{"65 KiB URL", url + "?q=" + strings.Repeat("x", 65<<10), "", http.StatusRequestURITooLong},
		{"9 KiB URL", url + "?q=" + strings.Repeat("x", 9<<10), "", http.StatusRequestURITooLong},
	} {
		req, _ := http.NewRequest(http.MethodGet, tc.url, nil)
		if tc.header != "" {
			req.Header.Set("X-Filler", tc.header)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.code || resp.Header.Get("Content-Type") != "application/problem+json" || resp.Header.Get(echo.HeaderXRequestID) == "" {
			t.Errorf("%s: got %d %s (request id %q), want %d application/problem+json with a request id", tc.name, resp.StatusCode,
				resp.Header.Get("Content-Type"), resp.Header.Get(echo.HeaderXRequestID), tc.code)
		}
	}
	// Beyond what the server reads at all, net/http answers by itself.
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("X-Filler", strings.Repeat("x", 2<<20))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("2 MiB header: got %d, want 431", resp.StatusCode)
	}

	resp, err = http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("plain request: got %d, want 200", resp.StatusCode)
	}

	srv := NewHTTPServer(e)
	if srv.ReadHeaderTimeout <= 0 || srv.ReadTimeout <= 0 || srv.WriteTimeout <= 0 || srv.IdleTimeout <= 0 {
		t.Errorf("server timeouts not all set: %+v", srv)
	}
}

// TestClientIP: X-Forwarded-For names the client only on a request from a
// trusted proxy, and then only as far as the proxies vouch for it; by
// default, and from anyone else, the client is the connection's peer.
func TestClientIP(t *testing.T) {
	_, proxies, _ := net.ParseCIDR("192.0.2.0/24")
	trusted := []*net.IPNet{proxies}
	for _, tc := range []struct {
		name    string
		trusted []*net.IPNet
		peer    string
		xff     []string
		want    string
	}{
		{"no proxies: the peer", nil, "198.51.100.7:4000", []string{"203.0.113.1"}, "198.51.100.7"},
		{"no proxies: a loopback peer is not trusted either", nil, "127.0.0.1:4000", []string{"203.0.113.1"}, "127.0.0.1"},
		{"from the proxy: the forwarded client", trusted, "192.0.2.10:4000", []string{"203.0.113.1"}, "203.0.113.1"},
		{"from the proxy without the header: the proxy", trusted, "192.0.2.10:4000", nil, "192.0.2.10"},
		{"from another peer: the header is ignored", trusted, "198.51.100.7:4000", []string{"203.0.113.1"}, "198.51.100.7"},
		{"a private peer is not trusted unless listed", trusted, "10.0.0.5:4000", []string{"203.0.113.1"}, "10.0.0.5"},
		{"a loopback peer is not trusted unless listed", trusted, "127.0.0.1:4000", []string{"203.0.113.1"}, "127.0.0.1"},
		// The client wrote the first entry; the proxy appended the
		// address it was reached from.
		{"what the client wrote left of its address is ignored", trusted, "192.0.2.10:4000", []string{"10.9.9.9, 1.2.3.4", "203.0.113.1"}, "203.0.113.1"},
		{"proxies in a row", trusted, "192.0.2.10:4000", []string{"203.0.113.1, 192.0.2.11"}, "203.0.113.1"},
		{"IPv6 client", trusted, "192.0.2.10:4000", []string{"2001:db8::1"}, "2001:db8::1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := NewEcho(zerolog.Nop(), func(error) *Problem { return nil })
			if tc.trusted != nil {
				e.IPExtractor = ClientIP(tc.trusted)
			}
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			req.RemoteAddr = tc.peer
			for _, v := range tc.xff {
				req.Header.Add(echo.HeaderXForwardedFor, v)
			}
			if got := e.NewContext(req, httptest.NewRecorder()).RealIP(); got != tc.want {
				t.Errorf("client %s, want %s", got, tc.want)
			}
		})
	}
}
