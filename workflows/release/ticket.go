package release

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/signetbus/signet/internal/httpjson"
	"github.com/signetbus/signet/internal/lazyre"
)

// Ticket is where a release manifest comes from and where its outcome goes.
type Ticket interface {
	// Fetch returns the ticket's title and body.
	Fetch(ctx context.Context) (title, body string, err error)
	// Comment adds text to the ticket (the release log).
	Comment(ctx context.Context, text string) error
	// Close marks the ticket done.
	Close(ctx context.Context) error
}

// ReadOnly is implemented by tickets that cannot be commented on or closed
// (files, URLs). Run writes Note to the log so that the operator knows where
// the outcome went.
type ReadOnly interface {
	Note() string
}

// preformatter is implemented by tickets whose markup needs the log wrapped
// to show as-is (Jira's {noformat}, GitHub's fenced block).
type preformatter interface {
	preformat(log string) string
}

// TicketConfig is what OpenTicket needs. Secrets are read from the files or
// environment variables named in Jira and GitHub only when a ticket of that
// kind is opened.
type TicketConfig struct {
	Jira   JiraConfig
	GitHub GitHubConfig
	// HTTPClient makes the API calls; nil means a client with a 30s timeout.
	HTTPClient *http.Client
	// LookupEnv reads token_env variables; nil means os.LookupEnv.
	LookupEnv func(string) (string, bool)
	// Log receives notes about read-only tickets; nil discards them.
	Log *slog.Logger
}

var (
	jiraKeyRe   = lazyre.New(`^[A-Z][A-Z0-9_]{0,63}-[1-9][0-9]{0,9}$`)
	ghOwnerRe   = lazyre.New(`^[A-Za-z0-9][A-Za-z0-9-]{0,38}$`)
	ghRepoRe    = lazyre.New(`^[A-Za-z0-9_.-]{1,100}$`)
	ghNumberRe  = lazyre.New(`^[1-9][0-9]{0,9}$`)
	maxResponse = int64(1 << 20)
)

// OpenTicket opens the ticket named by ref:
//
//	jira:OPS-123            a Jira issue (REST API v2)
//	github:owner/repo#42    a GitHub issue
//	file:/path, /path, ./p  a local file (comments go to /path.log)
//	https://host/release    a URL, read-only
func OpenTicket(ref string, cfg TicketConfig) (Ticket, error) {
	if ref == "" {
		return nil, errors.New("release: empty ticket reference, expected jira:KEY-1, github:owner/repo#1, a file or an https URL")
	}
	if strings.ContainsAny(ref, "\x00\r\n") {
		return nil, fmt.Errorf("release: ticket reference %q contains control characters", ref)
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	switch {
	case strings.HasPrefix(ref, "jira:"):
		return openJira(strings.TrimPrefix(ref, "jira:"), cfg, hc)
	case strings.HasPrefix(ref, "github:"):
		return openGitHub(strings.TrimPrefix(ref, "github:"), cfg, hc)
	case strings.HasPrefix(ref, "https://"), strings.HasPrefix(ref, "http://"):
		u, err := url.Parse(ref)
		if err != nil {
			return nil, fmt.Errorf("release: ticket url: %w", err)
		}
		if u.User != nil {
			return nil, errors.New("release: ticket url carries credentials, expected none")
		}
		if u.Scheme == "http" && !isLoopback(u.Hostname()) {
			return nil, fmt.Errorf("release: ticket url %q: http is allowed only on a loopback address, expected https", u.Redacted())
		}
		shown := *u
		shown.RawQuery, shown.Fragment = "", ""
		return &urlTicket{url: u.String(), shown: shown.String(), hc: hc, log: log}, nil
	case strings.HasPrefix(ref, "file:"):
		ref = strings.TrimPrefix(ref, "file:")
		if ref == "" {
			return nil, errors.New("release: file: ticket without a path")
		}
	}
	if strings.HasPrefix(ref, "-") {
		return nil, fmt.Errorf("release: ticket path %q starts with '-', expected a path (write ./%s)", ref, ref)
	}
	path, err := expandHome(ref)
	if err != nil {
		return nil, fmt.Errorf("release: ticket path: %w", err)
	}
	return &fileTicket{path: path, log: log}, nil
}

// APIError is a ticket or chat service answering with an unexpected
// status: the one error type of internal/httpjson.
type APIError = httpjson.Error

// call sends one API request with a JSON body (when in is not nil), checks
// the status is one of want and decodes the JSON answer into out (when not
// nil). Errors name the service and operation, never the credentials, and
// never the URL (a webhook URL is a secret). A transient failure is
// retried as internal/httpjson's rules allow: a GET or PATCH after a 502,
// a POST (a message, a comment, a transition) only when it provably never
// reached the service, so nothing is posted twice.
func call(ctx context.Context, hc *http.Client, service, op, method, u string, header http.Header, in, out any, want ...int) error {
	c := &httpjson.Client{HTTP: hc, Service: service, MaxResponse: maxResponse, Backoff: retryBackoff}
	return c.Do(ctx, httpjson.Call{Op: op, Method: method, URL: u, Header: header, In: in, Out: out, Want: want,
		Kind: httpjson.KindOf(method, header)})
}

// retryBackoff is the first wait before a retry; tests shorten it.
var retryBackoff = 500 * time.Millisecond

// stripURL drops the URL a *url.Error carries: a chat webhook URL holds a
// token and must not reach the log.
func stripURL(err error) error { return httpjson.StripURL(err) }

// apiMessage extracts the error text from a service's answer.
func apiMessage(b []byte) string { return httpjson.Message(b) }

// truncateMiddle keeps the head and the tail of s within max bytes: the
// header and the error at the end of a log both survive.
func truncateMiddle(s string, max int) string {
	if len(s) <= max {
		return s
	}
	note := "\n[... " + strconv.Itoa(len(s)-max) + " bytes cut; the mailed log is complete ...]\n"
	keep := max - len(note)
	if keep < 2 {
		return s[:max]
	}
	return s[:keep/2] + note + s[len(s)-keep/2:]
}

// splitTitle reads the plain-text ticket format used by files and URLs: the
// first non-blank line is the title (leading '#' and spaces stripped, so a
// Markdown heading works); the rest is the manifest. The title line is
// blanked in the body so that parse errors give the line number in the file.
func splitTitle(text string) (title, body string) {
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		t := strings.TrimSpace(strings.TrimSuffix(l, "\r"))
		if t == "" {
			continue
		}
		lines[i] = ""
		return strings.TrimSpace(strings.TrimLeft(t, "#")), strings.Join(lines, "\n")
	}
	return "", text
}

// fileTicket is a manifest in a local file. It cannot be closed; comments
// are appended to FILE.log.
type fileTicket struct {
	path string
	log  *slog.Logger
}

var _ ReadOnly = (*fileTicket)(nil)

func (t *fileTicket) Fetch(ctx context.Context) (string, string, error) {
	f, err := os.Open(t.path)
	if err != nil {
		return "", "", fmt.Errorf("file ticket: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxResponse+1))
	if err != nil {
		return "", "", fmt.Errorf("file ticket: %w", err)
	}
	if int64(len(b)) > maxResponse {
		return "", "", fmt.Errorf("file ticket %s is larger than %d bytes", t.path, maxResponse)
	}
	title, body := splitTitle(string(b))
	return title, body, nil
}

func (t *fileTicket) Comment(ctx context.Context, text string) error {
	f, err := os.OpenFile(t.path+".log", os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("file ticket: write comment: %w", err)
	}
	if !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	_, err = f.WriteString(text)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("file ticket: write comment: %w", err)
	}
	t.log.Info("file ticket: comment written beside the ticket", "path", t.path+".log")
	return nil
}

func (t *fileTicket) Close(ctx context.Context) error {
	t.log.Info("file ticket: nothing to close", "path", t.path)
	return nil
}

func (t *fileTicket) Note() string {
	return fmt.Sprintf("ticket %s is a file: the log is written to %s.log and there is nothing to close", t.path, t.path)
}

// urlTicket is a manifest served over http(s). It is read-only: Comment and
// Close write nothing.
type urlTicket struct {
	url   string
	shown string // url without its query, which may hold a token
	hc    *http.Client
	log   *slog.Logger
}

var _ ReadOnly = (*urlTicket)(nil)

func (t *urlTicket) Fetch(ctx context.Context) (string, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.url, nil)
	if err != nil {
		return "", "", fmt.Errorf("url ticket: %w", stripURL(err))
	}
	req.Header.Set("Accept", "text/plain")
	resp, err := t.hc.Do(req)
	if err != nil {
		return "", "", fmt.Errorf("url ticket: %w", stripURL(err))
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return "", "", fmt.Errorf("url ticket: %w", stripURL(err))
	}
	if resp.StatusCode != http.StatusOK {
		return "", "", &APIError{Service: "url", Op: "fetch ticket", Status: resp.StatusCode, Message: apiMessage(b)}
	}
	if int64(len(b)) > maxResponse {
		return "", "", fmt.Errorf("url ticket is larger than %d bytes", maxResponse)
	}
	title, body := splitTitle(string(b))
	return title, body, nil
}

func (t *urlTicket) Comment(ctx context.Context, text string) error {
	t.log.Info("url ticket is read-only: comment not posted", "url", t.shown)
	return nil
}

func (t *urlTicket) Close(ctx context.Context) error {
	t.log.Info("url ticket is read-only: not closed", "url", t.shown)
	return nil
}

func (t *urlTicket) Note() string {
	return fmt.Sprintf("ticket %s is a URL and read-only: the log is not posted there and it is not closed", t.shown)
}
