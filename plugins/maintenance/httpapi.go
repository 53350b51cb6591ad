package maintenance

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/signetbus/signet/internal/httpjson"
	"github.com/signetbus/signet/internal/redact"
)

// retryBackoff is the first wait before retrying a transient failure;
// tests shorten it.
var retryBackoff = 500 * time.Millisecond

// defaultHTTPTimeout bounds one request to a backend when its config sets
// no timeout.
const defaultHTTPTimeout = 10 * time.Second

// maxResponse bounds what is read of a backend's response.
const maxResponse = 8 << 20

// APIError is a backend's answer with an unexpected HTTP status: the one
// error type of internal/httpjson (Service is "alertmanager" or "icinga2").
type APIError = httpjson.Error

// httpAPI talks JSON to one backend.
type httpAPI struct {
	backend string
	base    *url.URL
	client  *http.Client
	// setAuth adds credentials to a request; nil means none. It reads
	// secret files on each call, so that rotated secrets are picked up.
	setAuth func(*http.Request) error
	// backoff is the first wait before a retry; 0 means httpjson's.
	backoff time.Duration
}

// newHTTPAPI checks a backend's URL, CA file and timeout and builds its
// client. Redirects are not followed (they would carry credentials to
// wherever they point) and no proxy is used.
func newHTTPAPI(backend, rawURL, caFile, timeout string) (*httpAPI, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("url: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("url: want http:// or https:// and a host, got %q", rawURL)
	}
	if u.User != nil {
		return nil, errors.New("url: credentials in the url are refused; use the backend's auth settings")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("url: want no query or fragment, got %q", rawURL)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	d := defaultHTTPTimeout
	if timeout != "" {
		if d, err = time.ParseDuration(timeout); err != nil || d <= 0 || d > 5*time.Minute {
			return nil, fmt.Errorf("timeout: want a duration up to 5m such as 10s, got %q", timeout)
		}
	}
	tr := &http.Transport{
		Proxy:               nil,
		TLSHandshakeTimeout: d,
		MaxIdleConns:        2,
		IdleConnTimeout:     30 * time.Second,
		TLSClientConfig:     &tls.Config{MinVersion: tls.VersionTLS12},
	}
	if caFile != "" {
		if u.Scheme != "https" {
			return nil, fmt.Errorf("ca_file is set but url %q is not https", rawURL)
		}
		pool, err := loadCA(caFile)
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	return &httpAPI{
		backoff: retryBackoff,
		backend: backend,
		base:    u,
		client: &http.Client{
			Transport:     tr,
			Timeout:       d,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}, nil
}

func loadCA(path string) (*x509.CertPool, error) {
	if err := checkPath("ca_file", path); err != nil {
		return nil, err
	}
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("ca_file %s: want PEM certificates, found none", path)
	}
	return pool, nil
}

func checkPath(key, path string) error {
	if !filepath.IsAbs(path) || filepath.Clean(path) != path {
		return fmt.Errorf("%s must be a clean absolute path, got %q", key, path)
	}
	return nil
}

// readSecret reads a one-line secret file. The secret is never part of
// an error message.
func readSecret(key, path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", key, err)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" || strings.ContainsAny(s, "\r\n") {
		return "", fmt.Errorf("%s %s: want one non-empty line", key, path)
	}
	return s, nil
}

// do sends one request and decodes a 2xx JSON answer into out (when not
// nil). Any other status is an *APIError. Transient failures are retried
// as internal/httpjson's rules allow: a query or a DELETE after a 502, a
// POST that creates a silence or a downtime only when it provably never
// reached the backend, so no second silence or downtime is left behind.
func (a *httpAPI) do(ctx context.Context, op, method, path string, query url.Values, header http.Header, body, out any) error {
	u := *a.base
	u.Path += path
	u.RawQuery = query.Encode()
	c := &httpjson.Client{HTTP: a.client, Service: a.backend, Where: a.backend + " at " + a.base.Redacted(),
		MaxResponse: maxResponse, Backoff: a.backoff, Message: safeExcerpt, Auth: a.setAuth}
	return c.Do(ctx, httpjson.Call{Op: op, Method: method, URL: u.String(), Header: header, In: body, Out: out,
		Kind: httpjson.KindOf(method, header)})
}

// safeExcerpt is excerpt with the request's credentials (the basic auth
// password, the Authorization header's credentials) and anything else that
// looks secret removed: a backend or a proxy may echo them in an error body,
// which becomes the reply, the audit reason and a log line.
func safeExcerpt(b []byte, req *http.Request) string {
	var secrets []string
	if _, pw, ok := req.BasicAuth(); ok {
		secrets = append(secrets, pw)
	}
	if _, cred, ok := strings.Cut(req.Header.Get("Authorization"), " "); ok {
		secrets = append(secrets, strings.TrimSpace(cred), strings.TrimRight(strings.TrimSpace(cred), "="))
	}
	return excerpt([]byte(redact.Scrub(redact.String(string(b)), secrets)))
}

// excerpt returns the start of a response body, on one line.
func excerpt(b []byte) string {
	const max = 256
	s := strings.ToValidUTF8(string(b), "?")
	if len(s) > max {
		s = strings.ToValidUTF8(s[:max], "") + "..."
	}
	return strings.Join(strings.Fields(s), " ")
}
