package maintenance

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// flakyProxy sits in front of a real Alertmanager, as a load balancer
// does, and answers the next fail[METHOD] requests of a method with 502
// without passing them on. It counts the requests that reached it.
type flakyProxy struct {
	mu   sync.Mutex
	fail map[string]int
	seen map[string]int
}

func newFlakyProxy(t *testing.T, backend string) (*flakyProxy, string) {
	u, err := url.Parse(backend)
	if err != nil {
		t.Fatal(err)
	}
	fp := &flakyProxy{fail: map[string]int{}, seen: map[string]int{}}
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fp.mu.Lock()
		fp.seen[r.Method]++
		fail := fp.fail[r.Method] > 0
		if fail {
			fp.fail[r.Method]--
		}
		fp.mu.Unlock()
		if fail {
			http.Error(w, "502 Bad Gateway", http.StatusBadGateway)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return fp, srv.URL
}

func (fp *flakyProxy) failNext(method string, n int) {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	fp.fail[method] = n
	fp.seen = map[string]int{}
}

func (fp *flakyProxy) count(method string) int {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	return fp.seen[method]
}

// A 502 while listing silences (a GET) is retried and the action
// succeeds; a 502 on creating one (a POST) is not retried, since the
// silence may exist already, and the error says so plainly.
func TestAlertmanagerTransient502(t *testing.T) {
	fp, base := newFlakyProxy(t, startAlertmanager(t))
	am := amAPI{t: t, base: base}
	p := newTestPlugin(t, `{"backends":[{"alertmanager":{"url":"`+base+`"}}]}`)

	fp.failNext(http.MethodGet, 2)
	res := mustRun(t, p, "web1", "alice", "start", map[string]any{"duration": "30m"})
	if !res.Changed || len(am.active("signet/")) != 1 {
		t.Fatalf("start after two 502s on the listing = %+v, active %v", res, am.active("signet/"))
	}
	mustRun(t, p, "web1", "alice", "end", nil)

	fp.failNext(http.MethodPost, 1)
	_, err := run(t, p, "web1", "alice", "start", map[string]any{"duration": "30m"})
	if err == nil || !strings.Contains(err.Error(), "create silence: unexpected status 502") {
		t.Fatalf("start with a 502 on the post: %v", err)
	}
	if n := fp.count(http.MethodPost); n != 1 {
		t.Errorf("the silence was posted %d times, want 1", n)
	}
}
