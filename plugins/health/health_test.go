package health

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signetbus/signet/plugins"
)

func newHealth(t *testing.T, config string) *Health {
	t.Helper()
	p, err := New(json.RawMessage(config))
	if err != nil {
		t.Fatalf("New(%s): %v", config, err)
	}
	return p.(*Health)
}

// recordSleeps replaces the wait between attempts with one that records
// it and returns at once, so that back-off is checked without waiting.
func recordSleeps(h *Health) func() []time.Duration {
	var (
		mu    sync.Mutex
		waits []time.Duration
	)
	h.sleep = func(ctx context.Context, d time.Duration) error {
		mu.Lock()
		waits = append(waits, d)
		mu.Unlock()
		return ctx.Err()
	}
	return func() []time.Duration {
		mu.Lock()
		defer mu.Unlock()
		return append([]time.Duration(nil), waits...)
	}
}

// run validates raw params against the DDL and Validate, as signetd does,
// then runs the action.
func run(t *testing.T, h *Health, action string, raw map[string]any) (*plugins.Result, error) {
	t.Helper()
	params, err := plugins.Prepare(h, action, raw)
	if err != nil {
		return nil, err
	}
	return h.Run(context.Background(), &plugins.Request{Action: action, Params: params})
}

func TestRegistered(t *testing.T) {
	if _, ok := plugins.Lookup(Name); !ok {
		t.Fatalf("plugin %q not registered", Name)
	}
}

func TestHTTP(t *testing.T) {
	var calls atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/version", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "1.0") })
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "myapp 1.1 ready\n") })
	mux.HandleFunc("/down", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "maintenance", http.StatusServiceUnavailable)
	})
	mux.HandleFunc("/moved", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/ok", http.StatusFound) })
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, strings.Repeat("x", 4000)+"needle")
	})
	mux.HandleFunc("/third", func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) < 3 {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, "1.1")
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	t.Run("pass", func(t *testing.T) {
		h := newHealth(t, ``)
		res, err := run(t, h, "http", map[string]any{"url": srv.URL + "/ok", "contains": "1.1"})
		if err != nil {
			t.Fatal(err)
		}
		if res.Data["status"] != 200 || res.Data["attempts"] != 1 || res.Data["body"] != "myapp 1.1 ready\n" || res.Changed {
			t.Fatalf("result = %+v", res)
		}
	})
	t.Run("wrong status", func(t *testing.T) {
		h := newHealth(t, ``)
		waits := recordSleeps(h)
		_, err := run(t, h, "http", map[string]any{"url": srv.URL + "/down", "retries": 2})
		want := srv.URL + `/down: want status 200, got 503 with body "maintenance\n" after 2 attempts`
		if err == nil || err.Error() != want {
			t.Fatalf("err = %v\nwant  %s", err, want)
		}
		var cerr *CheckError
		if !errors.As(err, &cerr) || cerr.Status != 503 || cerr.Attempts != 2 {
			t.Fatalf("err = %#v, want a CheckError with 503 after 2", err)
		}
		if got := waits(); fmt.Sprint(got) != "[1s]" {
			t.Fatalf("waits = %v, want [1s]", got)
		}
	})
	t.Run("wanted non-200 status", func(t *testing.T) {
		h := newHealth(t, ``)
		res, err := run(t, h, "http", map[string]any{"url": srv.URL + "/down", "status": 503, "contains": "maint"})
		if err != nil || res.Data["status"] != 503 {
			t.Fatalf("res %+v, err %v", res, err)
		}
	})
	t.Run("missing substring", func(t *testing.T) {
		h := newHealth(t, ``)
		recordSleeps(h)
		_, err := run(t, h, "http", map[string]any{"url": srv.URL + "/version", "contains": "1.1"})
		want := srv.URL + `/version: want status 200 containing "1.1", got 200 with body "1.0" after 3 attempts`
		if err == nil || err.Error() != want {
			t.Fatalf("err = %v\nwant  %s", err, want)
		}
	})
	t.Run("substring beyond the reported body", func(t *testing.T) {
		h := newHealth(t, ``)
		res, err := run(t, h, "http", map[string]any{"url": srv.URL + "/big", "contains": "needle", "retries": 1})
		if err != nil {
			t.Fatal(err)
		}
		if b := res.Data["body"].(string); len(b) != 256 || strings.Contains(b, "needle") {
			t.Fatalf("body excerpt is %d bytes, want the first 256", len(b))
		}
	})
	t.Run("redirect not followed", func(t *testing.T) {
		h := newHealth(t, ``)
		_, err := run(t, h, "http", map[string]any{"url": srv.URL + "/moved", "retries": 1})
		if err == nil || !strings.Contains(err.Error(), "got 302") {
			t.Fatalf("err = %v, want the 302 itself", err)
		}
	})
	t.Run("healthy on the third call", func(t *testing.T) {
		h := newHealth(t, ``)
		waits := recordSleeps(h)
		res, err := run(t, h, "http", map[string]any{"url": srv.URL + "/third", "contains": "1.1"})
		if err != nil {
			t.Fatal(err)
		}
		if res.Data["attempts"] != 3 || calls.Load() != 3 || res.Data["body"] != "1.1" {
			t.Fatalf("result = %+v after %d calls, want success on the 3rd", res, calls.Load())
		}
		if got := waits(); fmt.Sprint(got) != "[1s 2s]" {
			t.Fatalf("waits = %v, want [1s 2s] (doubling)", got)
		}
	})
	t.Run("back-off capped at 10s", func(t *testing.T) {
		h := newHealth(t, ``)
		waits := recordSleeps(h)
		_, err := run(t, h, "http", map[string]any{"url": srv.URL + "/down", "retries": 6, "interval": "3s"})
		if err == nil || !strings.Contains(err.Error(), "after 6 attempts") {
			t.Fatalf("err = %v", err)
		}
		if got := waits(); fmt.Sprint(got) != "[3s 6s 10s 10s 10s]" {
			t.Fatalf("waits = %v, want [3s 6s 10s 10s 10s]", got)
		}
	})
	t.Run("real wait between attempts", func(t *testing.T) {
		h := newHealth(t, ``)
		_, err := run(t, h, "http", map[string]any{"url": srv.URL + "/down", "retries": 2, "interval": "10ms"})
		if err == nil || !strings.Contains(err.Error(), "after 2 attempts") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestHTTPTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	h := newHealth(t, ``)
	_, err := run(t, h, "http", map[string]any{"url": srv.URL + "/slow", "retries": 1, "timeout": "50ms"})
	want := srv.URL + `/slow: want status 200, got no answer within 50ms after 1 attempt`
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant  %s", err, want)
	}
}

func TestHTTPConnectionRefused(t *testing.T) {
	addr := closedAddr(t)
	h := newHealth(t, ``)
	recordSleeps(h)
	_, err := run(t, h, "http", map[string]any{"url": "http://" + addr + "/health"})
	if err == nil || !strings.Contains(err.Error(), "connection refused after 3 attempts") {
		t.Fatalf("err = %v, want connection refused after 3 attempts", err)
	}
}

func TestHTTPDeadlineStopsRetries(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	}))
	defer srv.Close()
	h := newHealth(t, ``)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	params := plugins.Params{"url": srv.URL, "retries": int64(30), "interval": "10s"}
	_, err := h.Run(ctx, &plugins.Request{Action: "http", Params: params})
	var cerr *CheckError
	if !errors.As(err, &cerr) || !errors.Is(err, context.DeadlineExceeded) || cerr.Attempts != 1 {
		t.Fatalf("err = %v, want the deadline to stop the retries after 1 attempt", err)
	}
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestTCP(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	h := newHealth(t, ``)
	port := l.Addr().(*net.TCPAddr).Port
	res, err := run(t, h, "tcp", map[string]any{"port": port})
	if err != nil || res.Data["status"] != "open" || res.Data["attempts"] != 1 {
		t.Fatalf("open port: res %+v, err %v", res, err)
	}
	res, err = run(t, h, "tcp", map[string]any{"host": "localhost", "port": port})
	if err != nil || res.Data["status"] != "open" {
		t.Fatalf("localhost: res %+v, err %v", res, err)
	}

	closed := closedAddr(t)
	_, portStr, _ := net.SplitHostPort(closed)
	_, err = run(t, h, "tcp", map[string]any{"port": portStr, "timeout": "1s"})
	if err == nil || !strings.Contains(err.Error(), "tcp "+closed+": want open, got") || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("closed port: err = %v", err)
	}
}

func TestRefusals(t *testing.T) {
	def := newHealth(t, ``)
	custom := newHealth(t, `{"allow_hosts":["10.0.0.0/8","192.0.2.7","App.Internal"]}`)
	for _, c := range []struct {
		name   string
		h      *Health
		action string
		raw    map[string]any
		param  string
	}{
		{"private address", def, "http", map[string]any{"url": "http://10.0.0.1/"}, "url"},
		{"metadata address", def, "http", map[string]any{"url": "http://169.254.169.254/latest/meta-data/"}, "url"},
		{"public name", def, "http", map[string]any{"url": "https://example.com/"}, "url"},
		{"name resolving to loopback", def, "http", map[string]any{"url": "http://localtest.me/"}, "url"},
		{"localhost with trailing dot", def, "http", map[string]any{"url": "http://localhost./"}, "url"},
		{"mapped private address", def, "http", map[string]any{"url": "http://[::ffff:10.0.0.1]/"}, "url"},
		{"zoned address", def, "http", map[string]any{"url": "http://[fe80::1%25eth0]/"}, "url"},
		{"decimal address", def, "http", map[string]any{"url": "http://2130706433/"}, "url"},
		{"userinfo", def, "http", map[string]any{"url": "http://user:pw@127.0.0.1/"}, "url"},
		{"user only", def, "http", map[string]any{"url": "http://user@127.0.0.1/"}, "url"},
		{"file scheme", def, "http", map[string]any{"url": "file:///etc/passwd"}, "url"},
		{"gopher scheme", def, "http", map[string]any{"url": "gopher://127.0.0.1:70/"}, "url"},
		{"no host", def, "http", map[string]any{"url": "http:///health"}, "url"},
		{"opaque", def, "http", map[string]any{"url": "http:127.0.0.1"}, "url"},
		{"relative", def, "http", map[string]any{"url": "/health"}, "url"},
		{"port zero", def, "http", map[string]any{"url": "http://127.0.0.1:0/"}, "url"},
		{"port too big", def, "http", map[string]any{"url": "http://127.0.0.1:70000/"}, "url"},
		{"url too long", def, "http", map[string]any{"url": "http://127.0.0.1/" + strings.Repeat("a", 2100)}, "url"},
		{"url missing", def, "http", map[string]any{}, "url"},
		{"status too low", def, "http", map[string]any{"url": "http://127.0.0.1/", "status": 99}, "status"},
		{"status too high", def, "http", map[string]any{"url": "http://127.0.0.1/", "status": 600}, "status"},
		{"retries zero", def, "http", map[string]any{"url": "http://127.0.0.1/", "retries": 0}, "retries"},
		{"retries above 30", def, "http", map[string]any{"url": "http://127.0.0.1/", "retries": 31}, "retries"},
		{"interval above 10s", def, "http", map[string]any{"url": "http://127.0.0.1/", "interval": "11s"}, "interval"},
		{"interval negative", def, "http", map[string]any{"url": "http://127.0.0.1/", "interval": "-1s"}, "interval"},
		{"timeout zero", def, "http", map[string]any{"url": "http://127.0.0.1/", "timeout": "0s"}, "timeout"},
		{"timeout above 1m", def, "http", map[string]any{"url": "http://127.0.0.1/", "timeout": "2m"}, "timeout"},
		{"contains too long", def, "http", map[string]any{"url": "http://127.0.0.1/", "contains": strings.Repeat("v", 257)}, "contains"},
		{"unknown parameter", def, "http", map[string]any{"url": "http://127.0.0.1/", "method": "POST"}, "method"},
		{"tcp private host", def, "tcp", map[string]any{"host": "10.0.0.1", "port": 22}, "host"},
		{"tcp public name", def, "tcp", map[string]any{"host": "example.com", "port": 22}, "host"},
		{"tcp shell metacharacters", def, "tcp", map[string]any{"host": "127.0.0.1;id", "port": 22}, "host"},
		{"tcp leading dash", def, "tcp", map[string]any{"host": "-localhost", "port": 22}, "host"},
		{"tcp host with port", def, "tcp", map[string]any{"host": "127.0.0.1:22", "port": 22}, "host"},
		{"tcp port zero", def, "tcp", map[string]any{"port": 0}, "port"},
		{"tcp port too big", def, "tcp", map[string]any{"port": 65536}, "port"},
		{"tcp port missing", def, "tcp", map[string]any{}, "port"},
		{"tcp timeout zero", def, "tcp", map[string]any{"port": 22, "timeout": "0s"}, "timeout"},
		{"custom: loopback no longer allowed", custom, "http", map[string]any{"url": "http://127.0.0.1/"}, "url"},
		{"custom: outside prefix", custom, "tcp", map[string]any{"host": "11.0.0.1", "port": 22}, "host"},
		{"custom: next to single address", custom, "tcp", map[string]any{"host": "192.0.2.8", "port": 22}, "host"},
		{"custom: subdomain of allowed name", custom, "http", map[string]any{"url": "http://x.app.internal/"}, "url"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := run(t, c.h, c.action, c.raw)
			var perr *plugins.ParamError
			if !errors.As(err, &perr) || perr.Param != c.param {
				t.Fatalf("err = %v, want a ParamError on %s", err, c.param)
			}
		})
	}
	// Run refuses too when a caller skipped validation.
	_, err := def.Run(context.Background(), &plugins.Request{Action: "http", Params: plugins.Params{"url": "http://10.0.0.1/"}})
	if err == nil || !strings.Contains(err.Error(), "host 10.0.0.1 is not in this host's health allow_hosts") {
		t.Fatalf("Run without Validate: err = %v, want host not allowed", err)
	}
	if err := def.Validate("ping", nil); err == nil {
		t.Fatal("unknown action accepted")
	}
}

func TestAllowed(t *testing.T) {
	def := newHealth(t, ``)
	custom := newHealth(t, `{"allow_hosts":["10.0.0.0/8","192.0.2.7","App.Internal","fd00::/8"]}`)
	for _, c := range []struct {
		h      *Health
		action string
		params plugins.Params
	}{
		{def, "http", plugins.Params{"url": "http://127.0.0.1:8080/version"}},
		{def, "http", plugins.Params{"url": "https://127.9.9.9/"}},
		{def, "http", plugins.Params{"url": "http://LOCALHOST/"}},
		{def, "http", plugins.Params{"url": "http://[::1]:8080/"}},
		{def, "http", plugins.Params{"url": "http://[::ffff:127.0.0.1]/"}},
		{def, "tcp", plugins.Params{"port": int64(22)}},
		{def, "tcp", plugins.Params{"host": "::1", "port": int64(22)}},
		{custom, "http", plugins.Params{"url": "http://10.1.2.3/"}},
		{custom, "http", plugins.Params{"url": "http://app.internal/"}},
		{custom, "tcp", plugins.Params{"host": "192.0.2.7", "port": int64(22)}},
		{custom, "tcp", plugins.Params{"host": "fd12::1", "port": int64(22)}},
	} {
		if err := c.h.Validate(c.action, c.params); err != nil {
			t.Errorf("Validate(%s, %v) = %v, want allowed", c.action, c.params, err)
		}
	}
}

func TestConfigRejections(t *testing.T) {
	for _, c := range []struct{ config, want string }{
		{`{"allow_hosts":["10.0.0.1/8"]}`, "host bits"},
		{`{"allow_hosts":["fe80::1%eth0"]}`, "zone"},
		{`{"allow_hosts":["bad_name"]}`, "want an IP address"},
		{`{"allow_hosts":["-x.example"]}`, "want an IP address"},
		{`{"allow_hosts":["*.example.com"]}`, "want an IP address"},
		{`{"allow_hosts":[""]}`, "want an IP address"},
		{`{"allow":["127.0.0.1"]}`, "unknown field"},
	} {
		_, err := New(json.RawMessage(c.config))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%s): err = %v, want %q", c.config, err, c.want)
		}
	}
}
