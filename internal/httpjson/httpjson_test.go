package httpjson

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// flaky is a real HTTP server that answers the first failures requests
// with status (0: drops the connection after reading the request), then
// 200 {"ok":true}.
func flaky(t *testing.T, failures int, status int) (*httptest.Server, *atomic.Int32) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if int(n.Add(1)) <= failures {
			if status == 0 {
				conn, _, _ := w.(http.Hijacker).Hijack()
				conn.Close()
				return
			}
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(status)
			w.Write([]byte(`{"message":"upstream hiccup"}`))
			return
		}
		w.Write([]byte(`{"ok":true}`))
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func client() *Client { return &Client{Service: "svc", Backoff: time.Millisecond} }

func TestRetries(t *testing.T) {
	for _, tc := range []struct {
		name      string
		kind      Kind
		method    string
		failures  int
		status    int
		wantOK    bool
		wantCalls int32
	}{
		{"idempotent GET rides over two 502s", Idempotent, http.MethodGet, 2, 502, true, 3},
		{"idempotent GET rides over 503 and 504", Idempotent, http.MethodGet, 1, 504, true, 2},
		{"idempotent GET rides over a dropped connection", Idempotent, http.MethodGet, 1, 0, true, 2},
		{"idempotent GET gives up after 4 attempts", Idempotent, http.MethodGet, 10, 502, false, 4},
		{"404 is not transient", Idempotent, http.MethodGet, 1, 404, false, 1},
		{"500 is not retried", Idempotent, http.MethodGet, 1, 500, false, 1},
		{"a post is not repeated after a 502: it may have gone through", Once, http.MethodPost, 1, 502, false, 1},
		{"a post is not repeated after a dropped connection", Once, http.MethodPost, 1, 0, false, 1},
		{"a post is repeated after 429: the service refused it", Once, http.MethodPost, 1, 429, true, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, calls := flaky(t, tc.failures, tc.status)
			var out struct{ OK bool }
			err := client().Do(context.Background(), Call{Op: "op", Method: tc.method, URL: srv.URL, In: map[string]string{"a": "b"}, Out: &out, Kind: tc.kind})
			if (err == nil) != tc.wantOK || (tc.wantOK && !out.OK) {
				t.Fatalf("err = %v, out %+v; want ok %v", err, out, tc.wantOK)
			}
			if got := calls.Load(); got != tc.wantCalls {
				t.Errorf("%d requests reached the server, want %d", got, tc.wantCalls)
			}
			var e *Error
			if tc.status != 0 && !tc.wantOK && (!errors.As(err, &e) || e.Status != tc.status || e.Message != "upstream hiccup") {
				t.Errorf("err = %v, want an *Error %d with the service's message", err, tc.status)
			}
		})
	}
}

// A post whose connection is refused never reached the service, so it is
// sent again: the first dial goes to a real closed port.
func TestOnceRetriedWhenConnectionRefused(t *testing.T) {
	srv, calls := flaky(t, 0, 0)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	var dials atomic.Int32
	var d net.Dialer
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		if dials.Add(1) == 1 {
			return d.DialContext(ctx, network, closed)
		}
		return d.DialContext(ctx, network, addr)
	}}
	c := client()
	c.HTTP = &http.Client{Transport: tr}
	if err := c.Do(context.Background(), Call{Op: "post message", Method: http.MethodPost, URL: srv.URL, In: map[string]string{"text": "hi"}, Kind: Once}); err != nil {
		t.Fatalf("post after a refused connection: %v", err)
	}
	if calls.Load() != 1 || dials.Load() != 2 {
		t.Errorf("requests %d dials %d, want 1 and 2", calls.Load(), dials.Load())
	}
}

// Errors never carry the URL (a webhook URL is a secret), and waiting
// stops with the context.
func TestErrorsHideURLAndStopWithContext(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	u := "http://" + addr + "/hooks/T000/SECRET"
	c := &Client{Service: "webhook", Backoff: time.Hour}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Do(ctx, Call{Op: "post message", Method: http.MethodPost, URL: u, Kind: Once}) }()
	cancel()
	err := <-done
	if err == nil || strings.Contains(err.Error(), "SECRET") || !strings.HasPrefix(err.Error(), "webhook: post message: ") {
		t.Fatalf("err = %v", err)
	}
}
