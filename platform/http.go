package platform

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"
)

// Problem is an RFC 7807 problem document.
type Problem struct {
	Type       string      `json:"type"`
	Title      string      `json:"title"`
	Status     int         `json:"status"`
	Detail     string      `json:"detail,omitempty"`
	Instance   string      `json:"instance,omitempty"`
	RequestID  string      `json:"request_id,omitempty"`
	Violations []Violation `json:"violations,omitempty"`
	// RetryAfter, when set, is sent as the Retry-After header in seconds.
	RetryAfter int `json:"-"`
}

// Violation names a field of a request and what is wrong with it.
type Violation struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// ProblemMapper turns an error into a problem, or returns nil when it does
// not know the error.
type ProblemMapper func(err error) *Problem

// NewEcho returns an echo instance with request IDs, panic recovery,
// one log line per request, and errors answered as problem+json. mapper
// translates domain errors; anything it doesn't know is a 500 whose cause
// is logged and not shown.
func NewEcho(logger zerolog.Logger, mapper ProblemMapper) *echo.Echo {
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = errorHandler(logger, mapper)
	// Until told which proxies to trust (ClientIP), the client's address
	// is the connection's peer: limits are kept per address.
	e.IPExtractor = ClientIP(nil)
	e.Use(middleware.RequestID())
	e.Use(accessLog(logger))
	e.Use(requestSizeLimits)
	e.Use(middleware.RecoverWithConfig(middleware.RecoverConfig{DisableStackAll: true, LogErrorFunc: func(c echo.Context, err error, stack []byte) error {
		logger.Error().Err(err).Str("request_id", requestID(c)).Bytes("stack", stack).Msg("panic in handler")
		return err
	}}))
	return e
}

// ClientIP finds the client's address (echo's RealIP). With no trusted
// proxies it is the connection's peer, and X-Forwarded-For is ignored:
// anyone can write it. Behind proxies, a request whose peer is in trusted
// comes from the nearest address of X-Forwarded-For outside trusted (each
// proxy appends the address it was reached from, so the entries right of
// the client's are the proxies' and the ones left of it the client's
// inventions). Only the given ranges are trusted: echo's default trust of
// every loopback, link-local and private address would let any client on
// such a network name itself.
func ClientIP(trusted []*net.IPNet) echo.IPExtractor {
	if len(trusted) == 0 {
		return echo.ExtractIPDirect()
	}
	opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
	for _, n := range trusted {
		opts = append(opts, echo.TrustIPRange(n))
	}
	return echo.ExtractIPFromXFFHeader(opts...)
}

// The largest request line and header block answered by a handler. Larger
// ones get 414 and 431 as problem+json; only a header block over
// maxHeaderBytes, which the HTTP server refuses before any handler runs,
// gets net/http's own 431 in text/plain.
const (
	MaxURIBytes    = 8 << 10
	MaxHeaderBytes = 64 << 10
	maxHeaderBytes = 1 << 20
)

func requestSizeLimits(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if len(r.RequestURI) > MaxURIBytes {
			return echo.NewHTTPError(http.StatusRequestURITooLong, fmt.Sprintf("the request target is longer than %d bytes", MaxURIBytes))
		}
		n := 0
		for k, vs := range r.Header {
			for _, v := range vs {
				n += len(k) + len(v) + 4 // "k: v\r\n"
			}
		}
		if n > MaxHeaderBytes {
			return echo.NewHTTPError(http.StatusRequestHeaderFieldsTooLarge, fmt.Sprintf("the request headers are larger than %d bytes", MaxHeaderBytes))
		}
		return next(c)
	}
}

func requestID(c echo.Context) string {
	return c.Response().Header().Get(echo.HeaderXRequestID)
}

func accessLog(logger zerolog.Logger) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			start := time.Now()
			err := next(c)
			if err != nil {
				c.Error(err)
			}
			status := c.Response().Status
			ev := logger.Info()
			if status >= 500 {
				ev = logger.Warn()
			}
			if sc := trace.SpanContextFromContext(c.Request().Context()); sc.IsValid() {
				ev = ev.Str("trace_id", sc.TraceID().String())
			}
			ev.Str("request_id", requestID(c)).
				Str("method", c.Request().Method).
				Str("route", c.Path()).
				Int("status", status).
				Dur("latency", time.Since(start)).
				Msg("request")
			return nil
		}
	}
}

// ProblemTypeBlank is the problem type of plain HTTP errors.
const ProblemTypeBlank = "about:blank"

func errorHandler(logger zerolog.Logger, mapper ProblemMapper) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		p := mapper(err)
		if p == nil {
			var he *echo.HTTPError
			if errors.As(err, &he) {
				p = &Problem{Type: ProblemTypeBlank, Title: http.StatusText(he.Code), Status: he.Code, Detail: fmt.Sprint(he.Message)}
				if he.Code == http.StatusRequestEntityTooLarge {
					p.Detail = "request body is too large"
				}
				if he.Code >= 500 {
					p.Detail = "internal error"
				}
			} else {
				p = &Problem{Type: ProblemTypeBlank, Title: http.StatusText(http.StatusInternalServerError), Status: http.StatusInternalServerError, Detail: "internal error"}
			}
		}
		if p.Status >= 500 {
			logger.Error().Err(err).Str("request_id", requestID(c)).Str("route", c.Path()).Int("status", p.Status).Msg("request failed")
		}
		p.Instance = c.Request().URL.EscapedPath()
		p.RequestID = requestID(c)
		if p.RetryAfter > 0 {
			c.Response().Header().Set("Retry-After", fmt.Sprint(p.RetryAfter))
		}
		if p.Status == http.StatusUnauthorized {
			// RFC 9110 §11.6.1: a 401 names the scheme to authenticate with.
			c.Response().Header().Set("WWW-Authenticate", "Bearer")
		}
		WriteProblem(c, p)
	}
}

// WriteProblem writes p as application/problem+json.
func WriteProblem(c echo.Context, p *Problem) {
	c.Response().Header().Set(echo.HeaderContentType, "application/problem+json")
	if c.Request().Method == http.MethodHead {
		_ = c.NoContent(p.Status)
		return
	}
	c.Response().WriteHeader(p.Status)
	_ = json.NewEncoder(c.Response()).Encode(p)
}

// Router is where routes are added: *echo.Echo or *echo.Group.
type Router interface {
	Match(methods []string, path string, h echo.HandlerFunc, m ...echo.MiddlewareFunc) []*echo.Route
}

// GET mounts h for GET and HEAD on path: RFC 9110 wants HEAD wherever GET
// works, and net/http leaves the body out of a HEAD answer by itself.
func GET(r Router, path string, h echo.HandlerFunc, m ...echo.MiddlewareFunc) {
	r.Match([]string{http.MethodGet, http.MethodHead}, path, h, m...)
}

// NewHTTPServer returns a server with timeouts that keep slow or stuck
// clients from holding connections.
func NewHTTPServer(handler http.Handler) *http.Server {
	return &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    maxHeaderBytes,
	}
}

// Serve runs srv on ln until ctx ends, then shuts it down gracefully within
// timeout: it stops accepting and lets requests in flight finish.
func Serve(ctx context.Context, srv *http.Server, ln net.Listener, timeout time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("http shutdown: %w", err)
	}
	return nil
}

// HTTPListener is an HTTP server bound to its address, run as a Service.
type HTTPListener struct {
	srv     *http.Server
	ln      net.Listener
	timeout time.Duration
	lc      Lifecycle
}

// NewHTTPListener binds addr for handler; ":0" picks a free port. Stop
// shuts the server down gracefully within shutdownTimeout.
func NewHTTPListener(addr string, handler http.Handler, shutdownTimeout time.Duration) (*HTTPListener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return &HTTPListener{srv: NewHTTPServer(handler), ln: ln, timeout: shutdownTimeout}, nil
}

// Addr is the bound address.
func (l *HTTPListener) Addr() net.Addr { return l.ln.Addr() }

// Start serves until Stop (or ctx ends).
func (l *HTTPListener) Start(ctx context.Context) error {
	return l.lc.Start(ctx, func(ctx context.Context) error { return Serve(ctx, l.srv, l.ln, l.timeout) })
}

// Stop stops taking requests and lets those in flight finish within the
// shutdown timeout. Safe to call twice. A listener never started is closed.
func (l *HTTPListener) Stop() {
	if l.lc.Stopped() == nil {
		_ = l.ln.Close()
		return
	}
	_ = l.lc.Stop()
}

// Err is why the server stopped other than by Stop, or a failed graceful
// shutdown; nil while it runs.
func (l *HTTPListener) Err() error {
	select {
	case <-l.lc.Stopped():
		return l.lc.Stop()
	default:
		return nil
	}
}

// Stopped is closed once the server has stopped, by Stop or because it
// failed.
func (l *HTTPListener) Stopped() <-chan struct{} { return l.lc.Stopped() }
