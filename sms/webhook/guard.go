package webhook

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/smsctl/smsctl/sms"
)

// Guard keeps webhooks away from internal addresses (SSRF): unless
// AllowPrivate, an endpoint must be https and every address its host
// resolves to public, when it is created and again on every connection,
// where the address actually dialed is checked (a name that resolved to a
// public address at creation may resolve to 127.0.0.1 now).
type Guard struct {
	// AllowPrivate lets endpoints be http:// and reach any address
	// (development and tests: SMS_WEBHOOK_ALLOW_PRIVATE).
	AllowPrivate bool
	// Lookup resolves a host name. Defaults to the system resolver.
	Lookup func(ctx context.Context, host string) ([]netip.Addr, error)
}

// LookupTimeout bounds the resolution of an endpoint's host at creation.
const LookupTimeout = 5 * time.Second

// RefusedError is a connection or an endpoint refused for its address.
type RefusedError struct {
	Addr netip.Addr
	// Why names the kind of address, such as "a loopback address".
	Why string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("refused to connect to %s: %s", e.Addr, e.Why)
}

// parseURL reads an endpoint URL: absolute, http or https, with a host.
func parseURL(raw string) (*url.URL, error) {
	if strings.ContainsFunc(raw, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return nil, errors.New("must be a URL without spaces or control characters")
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return nil, errors.New("must be an absolute http(s) URL")
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, errors.New("must be an http or https URL")
	case u.Host == "" || u.Hostname() == "" || u.Opaque != "":
		return nil, errors.New("must be an absolute http(s) URL with a host")
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return nil, errors.New("must not have a #fragment")
	}
	return u, nil
}

// CheckURL says whether webhooks may be posted to raw: a *sms.Error of
// code unprocessable (422) naming the url when not, a validation error
// when raw is no URL.
func (g Guard) CheckURL(ctx context.Context, raw string) error {
	u, err := parseURL(raw)
	if err != nil {
		return sms.Invalid("url", err.Error())
	}
	if g.AllowPrivate {
		return nil
	}
	refuse := func(format string, args ...any) error {
		return &sms.Error{Code: sms.CodeUnprocessable, Kind: KindURLRefused,
			Message: fmt.Sprintf("url %s is refused: ", raw) + fmt.Sprintf(format, args...)}
	}
	if u.Scheme != "https" {
		return refuse("webhook endpoints must use https")
	}
	host := u.Hostname()
	if a, err := netip.ParseAddr(host); err == nil {
		if why := addrProblem(a); why != "" {
			return refuse("%s is %s", host, why)
		}
		return nil
	}
	lctx, cancel := context.WithTimeout(ctx, LookupTimeout)
	defer cancel()
	addrs, err := g.lookup(lctx, host)
	if err != nil || len(addrs) == 0 {
		return refuse("its host %s does not resolve", host)
	}
	for _, a := range addrs {
		if why := addrProblem(a); why != "" {
			return refuse("its host %s resolves to %s, %s", host, a, why)
		}
	}
	return nil
}

func (g Guard) lookup(ctx context.Context, host string) ([]netip.Addr, error) {
	if g.Lookup != nil {
		return g.Lookup(ctx, host)
	}
	ips, err := net.DefaultResolver.LookupIPAddr(ctx, host)
	if err != nil {
		return nil, err
	}
	out := make([]netip.Addr, 0, len(ips))
	for _, ip := range ips {
		// An A record comes back in 16-byte form; either way the address
		// is the IPv4 one.
		if v4 := ip.IP.To4(); v4 != nil {
			out = append(out, netip.AddrFrom4([4]byte(v4)))
		} else if a, ok := netip.AddrFromSlice(ip.IP); ok {
			out = append(out, a)
		}
	}
	return out, nil
}

// DialContext connects to address (host:port) for http.Transport: it
// resolves the host itself (with Lookup) and tries each address in turn;
// unless AllowPrivate, the socket's Control refuses any internal address
// it is about to connect to, so what is checked is what is dialed.
func (g Guard) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	if !g.AllowPrivate {
		d.Control = g.control
	}
	addrs := []netip.Addr{}
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = append(addrs, a)
	} else if addrs, err = g.lookup(ctx, host); err != nil {
		return nil, err
	} else if len(addrs) == 0 {
		return nil, fmt.Errorf("lookup %s: no address", host)
	}
	var errs []error
	for _, a := range addrs {
		c, err := d.DialContext(ctx, network, net.JoinHostPort(a.String(), port))
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// control refuses a socket about to connect to an internal address: the
// check of the address actually dialed.
func (g Guard) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("refused to connect to %s: not an IP address", address)
	}
	if why := addrProblem(ap.Addr()); why != "" {
		return &RefusedError{Addr: ap.Addr(), Why: why}
	}
	return nil
}

// Cloud metadata services, also covered by the link-local and private
// ranges, named for a clearer refusal.
var metadataAddrs = []netip.Addr{netip.MustParseAddr("169.254.169.254"), netip.MustParseAddr("fd00:ec2::254")}

// reserved are ranges neither loopback, private, link-local nor multicast
// that must not be reached either.
var reserved = []struct {
	prefix netip.Prefix
	why    string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "a \"this network\" address"},
	{netip.MustParsePrefix("100.64.0.0/10"), "a carrier-grade NAT address"},
	{netip.MustParsePrefix("192.0.0.0/24"), "an IETF protocol address"},
	{netip.MustParsePrefix("192.0.2.0/24"), "a documentation address"},
	{netip.MustParsePrefix("198.18.0.0/15"), "a benchmarking address"},
	{netip.MustParsePrefix("198.51.100.0/24"), "a documentation address"},
	{netip.MustParsePrefix("203.0.113.0/24"), "a documentation address"},
	{netip.MustParsePrefix("240.0.0.0/4"), "a reserved address"},
	{netip.MustParsePrefix("::/96"), "an IPv4-compatible address"},
	{netip.MustParsePrefix("64:ff9b::/96"), "a NAT64 address"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "a NAT64 address"},
	{netip.MustParsePrefix("100::/64"), "a discard address"},
	{netip.MustParsePrefix("2001::/32"), "a Teredo address"},
	{netip.MustParsePrefix("2001:db8::/32"), "a documentation address"},
	{netip.MustParsePrefix("2002::/16"), "a 6to4 address"},
	{netip.MustParsePrefix("fec0::/10"), "a site-local address"},
}

// addrProblem names the kind of internal address a is, or returns "" for
// a public unicast address.
func addrProblem(a netip.Addr) string {
	if a.Is4In6() {
		return "an IPv4-mapped IPv6 address"
	}
	a = a.WithZone("")
	switch {
	case a.IsUnspecified():
		return "an unspecified address"
	case a.IsLoopback():
		return "a loopback address"
	case a == metadataAddrs[0] || a == metadataAddrs[1]:
		return "a cloud metadata address"
	case a.IsLinkLocalUnicast():
		return "a link-local address"
	case a.IsMulticast() || a.IsInterfaceLocalMulticast() || a.IsLinkLocalMulticast():
		return "a multicast address"
	case a.IsPrivate():
		return "a private address"
	}
	for _, r := range reserved {
		if r.prefix.Contains(a) {
			return r.why
		}
	}
	if !a.IsGlobalUnicast() {
		return "not a public unicast address"
	}
	return ""
}
