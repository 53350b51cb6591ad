package plugins

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
)

// TestHealth drives the health plugin on web3 through the bus: the check
// runs inside web3's responder against web3's real app (the runit-supervised
// demo app on 127.0.0.1). http with contains set to the version the app
// serves passes (status 200, one attempt, the body); contains set to a
// version it does not serve fails with the plugin's want/got text; tcp to
// the app's port is open; tcp to a port nobody listens on fails with
// connection refused.
func TestHealth(t *testing.T) {
	s, _ := sharedStage(t)
	const host = "web3"
	h := s.Host(host)
	version, err := s.Serves(context.Background(), host)
	if err != nil {
		t.Fatal(err)
	}
	u := h.AppURL + "/version"

	rep := mustOK(t, host, "health", "http", map[string]any{"url": u, "contains": version})
	if rep.Changed || num(rep.Data["status"]) != 200 || num(rep.Data["attempts"]) != 1 || strings.TrimSpace(fmt.Sprint(rep.Data["body"])) != version {
		t.Errorf("http %s containing %q: want 200 at the first attempt with body %q, got changed=%v %v", u, version, version, rep.Changed, rep.Data)
	}

	rep = mustFail(t, host, "health", "http", map[string]any{"url": u, "contains": "9.9", "retries": 2, "interval": "10ms"})
	want := fmt.Sprintf("%s: want status 200 containing %q, got 200 with body %q after 2 attempts", u, "9.9", version+"\n")
	if rep.Error != want {
		t.Errorf("http containing a version the app does not serve:\n got %q\nwant %q", rep.Error, want)
	}

	port := strings.TrimPrefix(h.AppURL, "http://127.0.0.1:")
	p, err := strconv.Atoi(port)
	if err != nil {
		t.Fatalf("app URL %s: %v", h.AppURL, err)
	}
	rep = mustOK(t, host, "health", "tcp", map[string]any{"port": p})
	if rep.Data["status"] != "open" || num(rep.Data["attempts"]) != 1 {
		t.Errorf("tcp %d: want open after one attempt, got %v", p, rep.Data)
	}

	closed := closedPort(t)
	rep = mustFail(t, host, "health", "tcp", map[string]any{"port": closed})
	if want := fmt.Sprintf("tcp 127.0.0.1:%d: want open, got ", closed); !strings.HasPrefix(rep.Error, want) || !strings.Contains(rep.Error, "connection refused") {
		t.Errorf("tcp to closed port %d: want %q... connection refused, got %q", closed, want, rep.Error)
	}
}

// closedPort returns a loopback port that was free a moment ago and has no
// listener.
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return p
}
