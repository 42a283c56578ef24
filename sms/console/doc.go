// Package console is the operator console of the API role: server-rendered
// pages under /console (html/template, with a stylesheet and a small script
// embedded in the binary) for an account signed in with one of its API keys,
// or an operator signed in with the admin token across every account.
//
// Sessions are stateless, HMAC-signed cookies (HttpOnly, SameSite=Strict,
// Secure over TLS) with an idle and an absolute limit; every form carries a
// CSRF token tied to the session, and every response a strict
// Content-Security-Policy with no inline script or style. Live parts (the
// overview, an open message) poll a fragment of the page they are part of.
package console
