// Package health is signet's "health" plugin: it checks from the host that
// a service answers, so that a workflow moves on only once a deploy works.
//
// Two actions exist:
//
//   - http: GET a URL until it answers the expected status (and, when asked,
//     a body containing a substring such as the new version), with retries
//     and a doubling back-off
//   - tcp: connect to a port once
//
// Any signer could otherwise make every host fetch any URL (server-side
// request forgery), so the config's allow_hosts restricts the hosts both
// actions may reach: loopback only unless the host's admin says otherwise.
// URLs must be http or https and may not carry credentials. Redirects are
// not followed (a 3xx is the answer), and no proxy is used.
package health

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/signetbus/signet/internal/redact"
	"github.com/signetbus/signet/plugins"
)

func init() { plugins.Register(plugins.Info{Name: Name, New: New}) }

// Name is the agent name operators use.
const Name = "health"

// DefaultAllowHosts is what Config.AllowHosts means when empty: loopback.
var DefaultAllowHosts = []string{"localhost", "127.0.0.0/8", "::1"}

// Config is the plugin's section of the host config.
type Config struct {
	// AllowHosts lists the hosts http and tcp may reach. An entry is an
	// IP address (127.0.0.1, ::1), a CIDR prefix (10.0.0.0/8) or a host
	// name (localhost, app.internal). A URL or tcp host that is an IP
	// address is allowed when an address or prefix holds it; one that is
	// a name is allowed only when the name itself is listed (compared
	// without case), and is then dialled wherever DNS resolves it. Empty
	// means loopback only: localhost, 127.0.0.0/8 and ::1.
	AllowHosts []string `json:"allow_hosts,omitempty"`
}

// Limits of the inputs.
const (
	maxRetries       = 30
	maxBackoff       = 10 * time.Second
	maxAttemptTime   = time.Minute
	maxBodyRead      = 1 << 20 // bytes of a body searched for contains
	bodyExcerptBytes = 256     // bytes of a body reported
)

// Health is the "health" plugin.
type Health struct {
	names    map[string]bool
	prefixes []netip.Prefix
	// dialer dials every connection, for http and tcp alike.
	dialer *net.Dialer
	// sleep waits between attempts; replaceable in tests.
	sleep func(ctx context.Context, d time.Duration) error
}

var (
	_ plugins.Plugin    = (*Health)(nil)
	_ plugins.Validator = (*Health)(nil)
)

// New builds the plugin from its config (see Config).
func New(config json.RawMessage) (plugins.Plugin, error) {
	var cfg Config
	if err := plugins.DecodeConfig(Name, config, &cfg); err != nil {
		return nil, err
	}
	allow := cfg.AllowHosts
	if len(allow) == 0 {
		allow = DefaultAllowHosts
	}
	h := &Health{names: map[string]bool{}, dialer: &net.Dialer{}, sleep: sleepCtx}
	for i, a := range allow {
		if p, err := netip.ParsePrefix(a); err == nil {
			if p != p.Masked() {
				return nil, fmt.Errorf("plugin %s: config: allow_hosts[%d]: prefix %q has host bits set; did you mean %s", Name, i, a, p.Masked())
			}
			h.prefixes = append(h.prefixes, p)
			continue
		}
		if ip, err := netip.ParseAddr(a); err == nil {
			if ip.Zone() != "" {
				return nil, fmt.Errorf("plugin %s: config: allow_hosts[%d]: want an address without a zone, got %q", Name, i, a)
			}
			h.prefixes = append(h.prefixes, netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen()))
			continue
		}
		if !isHostName(a) {
			return nil, fmt.Errorf("plugin %s: config: allow_hosts[%d]: want an IP address, a CIDR prefix or a host name, got %q", Name, i, a)
		}
		h.names[strings.ToLower(a)] = true
	}
	return h, nil
}

// isHostName reports whether s is a DNS host name: dot-separated labels of
// letters, digits and inner dashes.
func isHostName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// Describe returns the plugin's DDL.
func (h *Health) Describe() plugins.DDL {
	out := []plugins.Output{
		{Name: "status", Description: "http: the last HTTP status (0 when no answer); tcp: \"open\"", Type: "any"},
		{Name: "attempts", Description: "attempts made", Type: plugins.TypeInteger},
		{Name: "elapsed_ms", Description: "milliseconds from the first attempt to the result", Type: plugins.TypeInteger},
		{Name: "body", Description: "http: the first 256 bytes of the last body", Type: plugins.TypeString},
	}
	return plugins.DDL{
		Name:        Name,
		Description: "check that a service on an allowed host answers",
		Actions: []plugins.Action{
			{Name: "http", Description: "GET a URL until it answers the wanted status and, when given, a body containing a substring", Timeout: 10 * time.Minute,
				Inputs: []plugins.Input{
					{Name: "url", Description: "http:// or https:// URL on an allowed host, without credentials", Type: plugins.TypeString, Required: true, MaxLength: 2048},
					{Name: "status", Description: "HTTP status wanted", Type: plugins.TypeInteger, Default: int64(200), Min: plugins.Float(100), Max: plugins.Float(599)},
					{Name: "contains", Description: "substring the body must contain, such as the version just deployed", Type: plugins.TypeString, MaxLength: 256},
					{Name: "retries", Description: "attempts to make before failing", Type: plugins.TypeInteger, Default: int64(3), Min: plugins.Float(1), Max: plugins.Float(maxRetries)},
					{Name: "interval", Description: "wait after the first failed attempt; doubles after each, up to 10s", Type: plugins.TypeDuration, Default: "1s", Min: plugins.Float(0), Max: plugins.Float(maxBackoff.Seconds()), MaxLength: 32},
					{Name: "timeout", Description: "bound of each attempt", Type: plugins.TypeDuration, Default: "5s", Min: plugins.Float(0.001), Max: plugins.Float(maxAttemptTime.Seconds()), MaxLength: 32},
				},
				Outputs: out},
			{Name: "tcp", Description: "connect to a TCP port on an allowed host", Timeout: 2 * time.Minute,
				Inputs: []plugins.Input{
					{Name: "host", Description: "host name or IP address, allowed by the host config", Type: plugins.TypeString, Default: "127.0.0.1", MaxLength: 253},
					{Name: "port", Description: "TCP port", Type: plugins.TypeInteger, Required: true, Min: plugins.Float(1), Max: plugins.Float(65535)},
					{Name: "timeout", Description: "bound of the connection attempt", Type: plugins.TypeDuration, Default: "3s", Min: plugins.Float(0.001), Max: plugins.Float(maxAttemptTime.Seconds()), MaxLength: 32},
				},
				Outputs: out[:3]},
		},
	}
}

// Validate checks the URL or tcp host against the rules and allow_hosts,
// and the durations against their bounds. It makes no connection.
func (h *Health) Validate(action string, params plugins.Params) error {
	switch action {
	case "http":
		if _, err := h.checkURL(params.String("url")); err != nil {
			return &plugins.ParamError{Action: action, Param: "url", Rule: "url", Msg: err.Error()}
		}
		if s := params.Int("status"); params.Has("status") && (s < 100 || s > 599) {
			return &plugins.ParamError{Action: action, Param: "status", Rule: "max", Msg: fmt.Sprintf("want an HTTP status from 100 to 599, got %d", s)}
		}
		if r := params.Int("retries"); params.Has("retries") && (r < 1 || r > maxRetries) {
			return &plugins.ParamError{Action: action, Param: "retries", Rule: "max", Msg: fmt.Sprintf("want 1 to %d attempts, got %d", maxRetries, r)}
		}
		if err := checkDuration(action, "interval", params, 0, maxBackoff); err != nil {
			return err
		}
		return checkDuration(action, "timeout", params, time.Millisecond, maxAttemptTime)
	case "tcp":
		host := params.String("host")
		if !params.Has("host") {
			host = "127.0.0.1"
		}
		if err := h.checkHost(host); err != nil {
			return &plugins.ParamError{Action: action, Param: "host", Rule: "allow_hosts", Msg: err.Error()}
		}
		if p := params.Int("port"); p < 1 || p > 65535 {
			return &plugins.ParamError{Action: action, Param: "port", Rule: "max", Msg: fmt.Sprintf("want a port from 1 to 65535, got %d", p)}
		}
		return checkDuration(action, "timeout", params, time.Millisecond, maxAttemptTime)
	}
	return fmt.Errorf("health: unknown action %q", action)
}

func checkDuration(action, name string, params plugins.Params, lo, hi time.Duration) error {
	if !params.Has(name) {
		return nil
	}
	d, err := time.ParseDuration(params.String(name))
	if err != nil || d < lo || d > hi {
		return &plugins.ParamError{Action: action, Param: name, Rule: "max", Msg: fmt.Sprintf("want a duration from %v to %v, got %q", lo, hi, params.String(name))}
	}
	return nil
}

// checkURL parses raw and checks its scheme, credentials and host.
func (h *Health) checkURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		var uerr *url.Error // its text quotes raw whole, credentials and all
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return nil, fmt.Errorf("want a URL, got %s: %w", plugins.Quote(raw), err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("want an http:// or https:// URL, got scheme %q", u.Scheme)
	}
	if u.Opaque != "" || u.Host == "" {
		return nil, fmt.Errorf("want scheme://host/path, got %s", plugins.Quote(raw))
	}
	if u.User != nil {
		return nil, errors.New("credentials in the URL are refused")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("want a port from 1 to 65535, got %q", p)
		}
	}
	if err := h.checkHost(u.Hostname()); err != nil {
		return nil, err
	}
	return u, nil
}

// checkHost allows an IP address inside an allowed prefix, or a name that
// is listed itself.
func (h *Health) checkHost(host string) error {
	if host == "" {
		return errors.New("want a host, got none")
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.Zone() != "" {
			return fmt.Errorf("want an address without a zone, got %q", host)
		}
		for _, p := range h.prefixes {
			if p.Contains(ip.Unmap()) {
				return nil
			}
		}
		return notAllowed(host)
	}
	if !isHostName(host) {
		return fmt.Errorf("want a host name or an IP address, got %q", host)
	}
	if !h.names[strings.ToLower(host)] {
		return notAllowed(host)
	}
	return nil
}

func notAllowed(host string) error {
	return fmt.Errorf("host %s is not in this host's health allow_hosts (loopback only unless configured)", host)
}

// Run performs one check.
func (h *Health) Run(ctx context.Context, req *plugins.Request) (*plugins.Result, error) {
	// Validate again: Run must be safe even if a caller skipped Validate.
	if err := h.Validate(req.Action, req.Params); err != nil {
		return nil, err
	}
	log := req.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	switch req.Action {
	case "http":
		return h.http(ctx, log, req.Params)
	case "tcp":
		return h.tcp(ctx, req.Params)
	}
	return nil, fmt.Errorf("health: unknown action %q", req.Action)
}

// param returns an integer parameter or its default.
func param(p plugins.Params, name string, def int64) int64 {
	if p.Has(name) {
		return p.Int(name)
	}
	return def
}

func duration(p plugins.Params, name string, def time.Duration) time.Duration {
	if p.Has(name) {
		return p.Duration(name)
	}
	return def
}

// attempt is the outcome of one HTTP attempt.
type attempt struct {
	status int
	body   []byte // up to maxBodyRead
	err    error
}

func (h *Health) http(ctx context.Context, log *slog.Logger, p plugins.Params) (*plugins.Result, error) {
	u, _ := h.checkURL(p.String("url")) // checked by Validate
	want := int(param(p, "status", 200))
	contains := p.String("contains")
	retries := int(param(p, "retries", 3))
	wait := duration(p, "interval", time.Second)
	timeout := duration(p, "timeout", 5*time.Second)

	client := &http.Client{
		Transport: &http.Transport{
			Proxy:             nil,
			DialContext:       h.dialer.DialContext,
			DisableKeepAlives: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	start := time.Now()
	var last attempt
	n := 0
	for n < retries {
		n++
		last = h.get(ctx, client, u, timeout)
		if last.err == nil && last.status == want && strings.Contains(string(last.body), contains) {
			return &plugins.Result{
				Summary: fmt.Sprintf("%s answered %d after %d attempts", redact.String(u.Redacted()), last.status, n),
				Data:    data(last.status, n, start, excerpt(last.body)),
			}, nil
		}
		log.Debug("health check attempt failed", "url", redact.String(u.Redacted()), "attempt", n, "status", last.status, "error", last.err)
		if n == retries {
			break
		}
		if err := h.sleep(ctx, wait); err != nil {
			break
		}
		wait = min(2*wait, maxBackoff)
	}
	return nil, &CheckError{URL: redact.String(u.Redacted()), Want: want, Contains: contains, Status: last.status,
		Body: excerpt(last.body), Err: last.err, Attempts: n, Ctx: ctx.Err()}
}

func (h *Health) get(ctx context.Context, client *http.Client, u *url.URL, timeout time.Duration) attempt {
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodGet, u.String(), nil)
	if err != nil {
		return attempt{err: err}
	}
	req.Header.Set("User-Agent", "signet-health")
	resp, err := client.Do(req)
	if err != nil {
		if actx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
			return attempt{err: fmt.Errorf("no answer within %v", timeout)}
		}
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return attempt{err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBodyRead))
	if err != nil {
		if actx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
			err = fmt.Errorf("body not read within %v", timeout)
		}
		return attempt{status: resp.StatusCode, body: body, err: fmt.Errorf("read body: %w", err)}
	}
	return attempt{status: resp.StatusCode, body: body}
}

// CheckError is a failed http check: what was wanted, what the last
// attempt found.
type CheckError struct {
	URL      string
	Want     int
	Contains string
	// Status is the last status, 0 when no answer came.
	Status int
	// Body is the start of the last body.
	Body string
	// Err is the last attempt's transport error, if any.
	Err      error
	Attempts int
	// Ctx is set when the action's own deadline or cancellation ended
	// the retries.
	Ctx error
}

func (e *CheckError) Error() string {
	want := fmt.Sprintf("want status %d", e.Want)
	if e.Contains != "" {
		want += fmt.Sprintf(" containing %q", e.Contains)
	}
	got := fmt.Sprintf("got %d with body %q", e.Status, e.Body)
	if e.Err != nil {
		got = "got " + e.Err.Error()
		if e.Status != 0 {
			got = fmt.Sprintf("got %d, then %v", e.Status, e.Err)
		}
	}
	attempts := "attempts"
	if e.Attempts == 1 {
		attempts = "attempt"
	}
	msg := fmt.Sprintf("%s: %s, %s after %d %s", e.URL, want, got, e.Attempts, attempts)
	if e.Ctx != nil {
		msg += fmt.Sprintf(" (stopped: %v)", e.Ctx)
	}
	return msg
}

// Unwrap returns the transport error or the context's.
func (e *CheckError) Unwrap() []error {
	var errs []error
	for _, err := range []error{e.Err, e.Ctx} {
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

func (h *Health) tcp(ctx context.Context, p plugins.Params) (*plugins.Result, error) {
	host := "127.0.0.1"
	if p.Has("host") {
		host = p.String("host")
	}
	addr := net.JoinHostPort(host, strconv.FormatInt(p.Int("port"), 10))
	timeout := duration(p, "timeout", 3*time.Second)
	start := time.Now()
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := h.dialer.DialContext(dctx, "tcp", addr)
	if err != nil {
		if dctx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
			err = fmt.Errorf("no answer within %v", timeout)
		}
		return nil, fmt.Errorf("tcp %s: want open, got %w", addr, err)
	}
	conn.Close()
	return &plugins.Result{Summary: "tcp " + addr + " is open", Data: map[string]any{
		"status": "open", "attempts": 1, "elapsed_ms": time.Since(start).Milliseconds()}}, nil
}

func data(status, attempts int, start time.Time, body string) map[string]any {
	return map[string]any{"status": status, "attempts": attempts, "elapsed_ms": time.Since(start).Milliseconds(), "body": body}
}

// excerpt returns the first bodyExcerptBytes bytes of a body as valid UTF-8.
func excerpt(b []byte) string {
	if len(b) > bodyExcerptBytes {
		b = b[:bodyExcerptBytes]
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
