package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// poster sends one POST and returns the status code once the whole answer
// has been read. Each worker owns one poster and uses it sequentially.
type poster interface {
	post(body []byte, deadline time.Time) (int, error)
	close()
}

// rawPoster speaks just enough HTTP/1.1 over one kept-alive TCP connection:
// one write and usually one read per request, no per-request goroutines or
// header maps. The generator shares two cores with the system it measures,
// so it must be cheap; net/http costs several times more CPU per request
// (-client nethttp keeps it available for cross-checks).
type rawPoster struct {
	addr   string
	head   []byte // request line and headers up to "Content-Length: "
	conn   net.Conn
	r      *bufio.Reader
	buf    []byte
	dialer net.Dialer
	// keep is how many leading bytes of each answer's body are kept in
	// kept (0: none), for callers that read a count from the answer.
	keep int
	kept []byte
}

func newRawPoster(target *url.URL, auth string) *rawPoster {
	host := target.Host
	if target.Port() == "" {
		host = net.JoinHostPort(target.Hostname(), "80")
	}
	path := target.RequestURI()
	head := fmt.Appendf(nil, "POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: smsctl-bench-loadgen\r\nContent-Type: application/json\r\nAuthorization: %s\r\nContent-Length: ",
		path, target.Host, auth)
	return &rawPoster{addr: host, head: head, dialer: net.Dialer{Timeout: 5 * time.Second}}
}

func (p *rawPoster) close() {
	if p.conn != nil {
		p.conn.Close()
		p.conn = nil
	}
}

func (p *rawPoster) post(body []byte, deadline time.Time) (int, error) {
	if p.conn == nil {
		c, err := p.dialer.Dial("tcp", p.addr)
		if err != nil {
			return 0, err
		}
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetNoDelay(true)
		}
		p.conn = c
		if p.r == nil {
			p.r = bufio.NewReaderSize(c, 16<<10)
		} else {
			p.r.Reset(c)
		}
	}
	_ = p.conn.SetDeadline(deadline)
	p.buf = append(p.buf[:0], p.head...)
	p.buf = strconv.AppendInt(p.buf, int64(len(body)), 10)
	p.buf = append(p.buf, "\r\n\r\n"...)
	p.buf = append(p.buf, body...)
	if _, err := p.conn.Write(p.buf); err != nil {
		p.close()
		return 0, err
	}
	p.kept = p.kept[:0]
	code, keep, err := readResponseKeep(p.r, &p.kept, p.keep)
	if err != nil {
		p.close()
		return 0, err
	}
	if !keep {
		p.close()
	}
	return code, nil
}

var errBadResponse = errors.New("malformed HTTP response")

// readResponse reads one HTTP/1.1 response and discards its body.
func readResponse(r *bufio.Reader) (code int, keepAlive bool, err error) {
	return readResponseKeep(r, nil, 0)
}

// discardKeep discards n bytes of r, first appending up to limit of them
// (in total) to *kept.
func discardKeep(r *bufio.Reader, n int, kept *[]byte, limit int) error {
	if kept != nil && len(*kept) < limit {
		take := min(n, limit-len(*kept))
		start := len(*kept)
		*kept = append(*kept, make([]byte, take)...)
		if _, err := io.ReadFull(r, (*kept)[start:]); err != nil {
			return err
		}
		n -= take
	}
	_, err := r.Discard(n)
	return err
}

// readResponseKeep reads one HTTP/1.1 response, appends up to limit bytes
// of its body to *kept (when kept is not nil) and discards the rest.
func readResponseKeep(r *bufio.Reader, kept *[]byte, limit int) (code int, keepAlive bool, err error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		return 0, false, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, false, errBadResponse
	}
	code, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, false, errBadResponse
	}
	keepAlive = line[7] == '1'
	length, chunked := int64(-1), false
	for {
		line, err = r.ReadSlice('\n')
		if err != nil {
			return 0, false, err
		}
		if len(line) <= 2 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		value = bytes.TrimSpace(value)
		switch {
		case asciiEqualFold(name, "content-length"):
			if length, err = strconv.ParseInt(string(value), 10, 64); err != nil {
				return 0, false, errBadResponse
			}
		case asciiEqualFold(name, "transfer-encoding"):
			chunked = asciiEqualFold(value, "chunked")
		case asciiEqualFold(name, "connection"):
			if asciiEqualFold(value, "close") {
				keepAlive = false
			}
		}
	}
	switch {
	case chunked:
		for {
			line, err = r.ReadSlice('\n')
			if err != nil {
				return 0, false, err
			}
			size, _, _ := bytes.Cut(bytes.TrimSpace(line), []byte(";"))
			n, err := strconv.ParseInt(string(size), 16, 64)
			if err != nil {
				return 0, false, errBadResponse
			}
			if n == 0 {
				for { // trailers, then the final CRLF
					line, err = r.ReadSlice('\n')
					if err != nil {
						return 0, false, err
					}
					if len(line) <= 2 {
						return code, keepAlive, nil
					}
				}
			}
			if err := discardKeep(r, int(n), kept, limit); err != nil {
				return 0, false, err
			}
			if _, err := r.Discard(2); err != nil {
				return 0, false, err
			}
		}
	case length >= 0:
		if err := discardKeep(r, int(length), kept, limit); err != nil {
			return 0, false, err
		}
	case code == http.StatusNoContent || code == http.StatusNotModified || code < 200:
	default:
		// No length: the body runs to the end of the connection.
		_, err := io.Copy(io.Discard, r)
		return code, false, err
	}
	return code, keepAlive, nil
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// netHTTPPoster uses net/http with a shared, tuned Transport.
type netHTTPPoster struct {
	client *http.Client
	url    string
	auth   string
}

func newNetHTTPTransport(conns int) *http.Transport {
	return &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxConnsPerHost:     conns,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     2 * time.Minute,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
}

func (p *netHTTPPoster) close() {}

func (p *netHTTPPoster) post(body []byte, deadline time.Time) (int, error) {
	req, err := http.NewRequest(http.MethodPost, p.url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", p.auth)
	c := *p.client
	c.Timeout = time.Until(deadline)
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, err
}
