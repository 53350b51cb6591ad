// Package httpjson is the one HTTP JSON client of signet's REST
// integrations: the release's ticket and chat services (Jira, GitHub, a
// Slack-compatible webhook) and the maintenance plugin's backends
// (Alertmanager, Icinga 2). It has one error type, bounded answers, and one
// set of retry rules.
//
// # Retries
//
// A transient failure (the connection refused, a 502 from a proxy) should
// not abort a release half-way, but a retry must never post twice: a
// second chat message, a second ticket comment or a second silence.
// So each call says what it is:
//
//   - Idempotent (GET, PUT, DELETE, and a PATCH or POST that sets a state):
//     retried after a transport error and after 429, 502, 503 and 504.
//   - Once (a POST that creates something: a message, a comment, a
//     silence, a downtime): retried only when the request provably never
//     reached the service: the connection could not be opened (refused,
//     no route, DNS failure), or the service answered 429 Too Many
//     Requests, which rejects a request without acting on it. A 502, 503
//     or 504, or a connection lost after sending, may come after the post
//     went through, so it is returned as the error.
//
// Retries wait Backoff, then twice as long each time (capped at 8x), or
// the Retry-After the service sent when that is shorter than a minute, and
// stop when the context ends.
package httpjson

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Kind says whether a call may be sent twice.
type Kind int

const (
	// Idempotent calls are retried after any transient failure.
	Idempotent Kind = iota
	// Once calls are retried only when the service provably did not act.
	Once
)

// Error is a service answering with a status the call did not want.
type Error struct {
	Service string // "jira", "webhook", "alertmanager"...
	Op      string // what was attempted: "fetch OPS-1", "create silence"
	Status  int
	Message string // the service's message, shortened, secrets removed
}

func (e *Error) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("%s: %s: unexpected status %d", e.Service, e.Op, e.Status)
	}
	return fmt.Sprintf("%s: %s: unexpected status %d: %s", e.Service, e.Op, e.Status, e.Message)
}

// Client sends calls to one service.
type Client struct {
	// HTTP sends the requests; nil means a client with a 30s timeout.
	HTTP *http.Client
	// Service names the service in errors: "jira", "alertmanager".
	Service string
	// Where, when set, replaces Service in transport errors, to add a
	// URL that is not secret: "alertmanager at http://am:9093".
	Where string
	// Attempts is how many times a call is tried; 0 means 4.
	Attempts int
	// Backoff is the first wait between attempts; 0 means 500ms.
	Backoff time.Duration
	// MaxResponse bounds an answer; 0 means 1 MiB.
	MaxResponse int64
	// Message turns an unwanted answer's body into Error.Message; nil
	// means Message (JSON error fields or the start of the body).
	Message func(body []byte, req *http.Request) string
	// Header is added to every request (credentials go through Auth).
	Header http.Header
	// Auth adds credentials to a request; it is called for each attempt,
	// so a rotated secret file is picked up. nil means none.
	Auth func(*http.Request) error
}

// Call is one request.
type Call struct {
	Op     string // "comment on OPS-1", for errors
	Method string
	URL    string
	Header http.Header
	// In is encoded as the JSON body when not nil.
	In any
	// Out receives the decoded JSON answer when not nil.
	Out any
	// Want lists the accepted statuses; empty means any 2xx.
	Want []int
	// Kind says whether the call may be retried after a transient failure.
	Kind Kind
}

// Do sends the call, retrying as its Kind allows.
func (c *Client) Do(ctx context.Context, call Call) error {
	attempts := c.Attempts
	if attempts <= 0 {
		attempts = 4
	}
	wait := c.Backoff
	if wait <= 0 {
		wait = 500 * time.Millisecond
	}
	maxWait := 8 * wait
	for try := 1; ; try++ {
		retryAfter, err := c.once(ctx, call)
		if err == nil || try >= attempts || !retryable(call.Kind, err) {
			if err != nil && try > 1 {
				err = fmt.Errorf("%w (after %d attempts)", err, try)
			}
			return err
		}
		d := wait
		if retryAfter > 0 && retryAfter < time.Minute {
			d = retryAfter
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		wait = min(2*wait, maxWait)
	}
}

// notSent marks a transport error that happened before the request left.
type notSent struct{ err error }

func (e *notSent) Error() string { return e.err.Error() }
func (e *notSent) Unwrap() error { return e.err }

// sentMaybe marks a transport error after the request may have left.
type sentMaybe struct{ err error }

func (e *sentMaybe) Error() string { return e.err.Error() }
func (e *sentMaybe) Unwrap() error { return e.err }

func retryable(k Kind, err error) bool {
	var ns *notSent
	if errors.As(err, &ns) {
		return true
	}
	var e *Error
	if errors.As(err, &e) {
		switch e.Status {
		case http.StatusTooManyRequests:
			return true
		case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return k == Idempotent
		}
		return false
	}
	var sm *sentMaybe
	return errors.As(err, &sm) && k == Idempotent && !untrusted(err)
}

// untrusted reports a TLS verification failure: it will fail the same way
// on every try.
func untrusted(err error) bool {
	var cv *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var ci x509.CertificateInvalidError
	return errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &hn) || errors.As(err, &ci)
}

func (c *Client) once(ctx context.Context, call Call) (retryAfter time.Duration, err error) {
	where := c.Where
	if where == "" {
		where = c.Service
	}
	var body io.Reader
	if call.In != nil {
		b, err := json.Marshal(call.In)
		if err != nil {
			return 0, fmt.Errorf("%s: %s: encode request: %w", c.Service, call.Op, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, call.Method, call.URL, body)
	if err != nil {
		return 0, fmt.Errorf("%s: %s: %w", c.Service, call.Op, StripURL(err))
	}
	req.Header.Set("Accept", "application/json")
	if call.In != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range c.Header {
		req.Header[k] = v
	}
	for k, v := range call.Header {
		req.Header[k] = v
	}
	if c.Auth != nil {
		if err := c.Auth(req); err != nil {
			return 0, fmt.Errorf("%s: %s: credentials: %w", c.Service, call.Op, err)
		}
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		err = fmt.Errorf("%s: %s: %w", where, call.Op, StripURL(err))
		if ctx.Err() != nil {
			return 0, err
		}
		if dialFailed(err) {
			return 0, &notSent{err}
		}
		return 0, &sentMaybe{err}
	}
	defer resp.Body.Close()
	limit := c.MaxResponse
	if limit <= 0 {
		limit = 1 << 20
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return 0, &sentMaybe{fmt.Errorf("%s: %s: read answer: %w", where, call.Op, StripURL(err))}
	}
	if int64(len(b)) > limit {
		return 0, fmt.Errorf("%s: %s: answer larger than %d bytes", c.Service, call.Op, limit)
	}
	if !wanted(resp.StatusCode, call.Want) {
		msg := c.Message
		if msg == nil {
			msg = func(b []byte, _ *http.Request) string { return Message(b) }
		}
		return retryAfterOf(resp), &Error{Service: c.Service, Op: call.Op, Status: resp.StatusCode, Message: msg(b, req)}
	}
	if call.Out != nil {
		if err := json.Unmarshal(b, call.Out); err != nil {
			return 0, fmt.Errorf("%s: %s: decode answer: %w", c.Service, call.Op, err)
		}
	}
	return 0, nil
}

func wanted(status int, want []int) bool {
	if len(want) == 0 {
		return status >= 200 && status <= 299
	}
	for _, w := range want {
		if status == w {
			return true
		}
	}
	return false
}

// dialFailed reports whether err happened while opening the connection,
// before any byte of the request was sent.
func dialFailed(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	var dns *net.DNSError
	return errors.As(err, &dns)
}

func retryAfterOf(resp *http.Response) time.Duration {
	if s, err := strconv.Atoi(strings.TrimSpace(resp.Header.Get("Retry-After"))); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	return 0
}

// StripURL drops the URL a *url.Error carries: a chat webhook URL holds a
// token and must not reach a log.
func StripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// Message extracts the error text from Jira ({"errorMessages":[...],
// "errors":{...}}), GitHub and Alertmanager ({"message":...}) answers, or
// the start of a plain body, on one line of at most 200 bytes.
func Message(b []byte) string {
	var e struct {
		Message       string            `json:"message"`
		ErrorMessages []string          `json:"errorMessages"`
		Errors        map[string]string `json:"errors"`
	}
	var parts []string
	if json.Unmarshal(b, &e) == nil {
		if e.Message != "" {
			parts = append(parts, e.Message)
		}
		parts = append(parts, e.ErrorMessages...)
		for k, v := range e.Errors {
			parts = append(parts, k+": "+v)
		}
	}
	msg := strings.Join(parts, "; ")
	if msg == "" {
		msg = strings.TrimSpace(string(b))
	}
	msg = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, msg)
	if len(msg) > 200 {
		msg = strings.ToValidUTF8(msg[:200], "") + "..."
	}
	return msg
}

// KindOf is the Kind of a request by its method: POST creates (Once),
// every other method is idempotent. A POST that asks to be treated as a
// GET (X-HTTP-Method-Override: GET, as Icinga's queries do) is idempotent.
func KindOf(method string, header http.Header) Kind {
	if method == http.MethodPost && !strings.EqualFold(header.Get("X-HTTP-Method-Override"), http.MethodGet) {
		return Once
	}
	return Idempotent
}
