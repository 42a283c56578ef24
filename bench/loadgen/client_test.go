package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestRawPoster(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Header.Get("Authorization") != "Bearer k" || r.Header.Get("Content-Type") != "application/json" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		switch r.URL.Query().Get("mode") {
		case "chunked":
			w.WriteHeader(http.StatusAccepted)
			w.(http.Flusher).Flush()
			w.Write(body)
			w.(http.Flusher).Flush()
			w.Write([]byte(strings.Repeat("x", 5000)))
		case "close":
			w.Header().Set("Connection", "close")
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte("bye"))
		case "empty":
			w.WriteHeader(http.StatusNoContent)
		default:
			w.WriteHeader(http.StatusAccepted)
			w.Write(body)
		}
	}))
	defer srv.Close()
	for _, tc := range []struct {
		mode string
		want int
	}{{"", 202}, {"chunked", 202}, {"close", 503}, {"empty", 204}, {"", 202}} {
		u, _ := url.Parse(srv.URL + "/v1/messages?mode=" + tc.mode)
		p := newRawPoster(u, "Bearer k")
		for range 3 { // the connection must stay usable (or be redialed)
			code, err := p.post([]byte(`{"a":1}`), time.Now().Add(5*time.Second))
			if err != nil || code != tc.want {
				t.Fatalf("mode %q: got %d, %v; want %d", tc.mode, code, err, tc.want)
			}
		}
		p.close()
	}
}

func TestBody(t *testing.T) {
	g := &generator{sender: "+14155550101", text: "hi", recipient: 999_998}
	got := string(g.body(nil, 3))
	want := `{"sender":"+14155550101","recipient":"+447911000001","text":"hi #3"}`
	if got != want {
		t.Fatalf("body = %s, want %s", got, want)
	}
}

func TestRawPosterKeepsBodyPrefix(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := `{"accepted":998,"rejected":2,"results":[` + strings.Repeat(`{"index":0},`, 2000) + `{}]}`
		if r.URL.Query().Get("mode") == "chunked" {
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			for i := 0; i < len(body); i += 7 {
				w.Write([]byte(body[i:min(i+7, len(body))]))
				w.(http.Flusher).Flush()
			}
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write([]byte(body))
	}))
	defer srv.Close()
	for _, mode := range []string{"", "chunked"} {
		u, _ := url.Parse(srv.URL + "/v1/messages/batch?mode=" + mode)
		p := newRawPoster(u, "Bearer k")
		p.keep = 64
		for range 2 {
			code, err := p.post([]byte(`{}`), time.Now().Add(5*time.Second))
			if err != nil || code != http.StatusOK {
				t.Fatalf("mode %q: %d, %v", mode, code, err)
			}
			if a, r := batchCounts(p.kept); a != 998 || r != 2 || len(p.kept) != 64 {
				t.Fatalf("mode %q: accepted %d rejected %d from %q", mode, a, r, p.kept)
			}
		}
		p.close()
	}
}
