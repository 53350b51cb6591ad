package health

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestURLTokensNotEchoed: a health URL may carry a token in its query
// string; the summary of a passing check and the error of a failing one
// (both become the reply, the audit record and a log line) show the host
// and path but never the query values, and a bad URL is not quoted whole.
func TestURLTokensNotEchoed(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/down" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		fmt.Fprint(w, "ok")
	}))
	defer srv.Close()
	h := newHealth(t, "")
	recordSleeps(h)
	res, err := run(t, h, "http", map[string]any{"url": srv.URL + "/up?token=T0KEN1&x=1"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(res.Summary, "T0KEN1") || !strings.Contains(res.Summary, srv.URL+"/up?token=") {
		t.Errorf("summary %q: want the URL without its query values", res.Summary)
	}
	_, err = run(t, h, "http", map[string]any{"url": srv.URL + "/down?access_token=T0KEN2", "retries": 1})
	if err == nil || strings.Contains(err.Error(), "T0KEN2") || !strings.Contains(err.Error(), "/down?access_token=") {
		t.Errorf("error %v: want the URL without its query values", err)
	}
	_, err = run(t, h, "http", map[string]any{"url": "http://127.0.0.1:99999/x?token=T0KEN3"})
	if err == nil || strings.Contains(err.Error(), "T0KEN3") {
		t.Errorf("error %v: a refused URL is quoted with its token", err)
	}
}

func TestUnparsableURLNotQuotedWhole(t *testing.T) {
	h := newHealth(t, "")
	recordSleeps(h)
	_, err := run(t, h, "http", map[string]any{"url": "http://127.0.0.1:1/x?token=T0KEN4&%zz", "retries": 1, "timeout": "1ms"})
	if err != nil && strings.Contains(err.Error(), "T0KEN4") {
		t.Errorf("error quotes the token: %v", err)
	}
	_, err = run(t, h, "http", map[string]any{"url": "http://u:hunter2@[::1/x"})
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("want an error without the password, got %v", err)
	}
}

func TestRejectedURLQuotedBounded(t *testing.T) {
	h := newHealth(t, "")
	_, err := run(t, h, "http", map[string]any{"url": "http:" + strings.Repeat("x", 2000)})
	if err == nil || len(err.Error()) > 300 || !strings.Contains(err.Error(), "(2005 bytes)") {
		t.Errorf("want a bounded quote that says the length, got %d bytes: %.120v", len(fmt.Sprint(err)), err)
	}
}
