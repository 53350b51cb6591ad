package plugins

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/signetbus/signet/internal/stage"
)

// TestService drives the service plugin on web2 through the bus against the
// host's real runit (runsvdir, runsv, sv): status reports the app running
// with a pid; stop stops it and its port refuses connections; a second stop
// changes nothing; start brings it back (a pid, the port answers the
// version); restart runs it as a new process that answers again. The test
// leaves web2 running and waits until HAProxy sees it UP again.
func TestService(t *testing.T) {
	s, _ := sharedStage(t)
	ctx := context.Background()
	const host = "web2"
	h := s.Host(host)
	svc := map[string]any{"service": s.App}
	t.Cleanup(func() {
		do(t, host, "service", "start", svc)
		waitAllUp(t)
	})

	rep := mustOK(t, host, "service", "status", svc)
	pid := num(rep.Data["pid"])
	if rep.Data["service"] != s.App || rep.Data["state"] != "running" || rep.Data["active"] != true || pid <= 0 || rep.Data["backend"] != "runit" {
		t.Fatalf("status: want %s running under runit with a pid, got %v", s.App, rep.Data)
	}
	if rep.Changed {
		t.Errorf("status: changed=true, want false")
	}
	if !answers(h) {
		t.Fatalf("%s's app does not answer before the test", host)
	}

	rep = mustOK(t, host, "service", "stop", svc)
	if !rep.Changed || rep.Data["state"] != "stopped" || rep.Data["active"] != false || num(rep.Data["pid"]) != 0 {
		t.Fatalf("stop: want changed, stopped, no pid; got changed=%v %v", rep.Changed, rep.Data)
	}
	if answers(h) {
		t.Errorf("stop: %s's app port %s still accepts connections", host, h.AppURL)
	}
	if v, err := s.Serves(ctx, host); err == nil {
		t.Errorf("stop: %s still serves %q", host, v)
	}

	rep = mustOK(t, host, "service", "stop", svc)
	if rep.Changed || rep.Data["state"] != "stopped" {
		t.Errorf("second stop: want changed=false and stopped, got changed=%v %v", rep.Changed, rep.Data)
	}

	rep = mustOK(t, host, "service", "start", svc)
	started := num(rep.Data["pid"])
	if !rep.Changed || rep.Data["state"] != "running" || rep.Data["active"] != true || started <= 0 {
		t.Fatalf("start: want changed, running, pid > 0; got changed=%v %v", rep.Changed, rep.Data)
	}
	if v := serves(t, s, host); v != "1.0" && v != "1.1" {
		t.Errorf("start: %s serves %q, want a version", host, v)
	}

	rep = mustOK(t, host, "service", "restart", svc)
	restarted := num(rep.Data["pid"])
	if !rep.Changed || rep.Data["state"] != "running" || restarted <= 0 || restarted == started {
		t.Fatalf("restart: want changed, running as a new process (pid was %d), got changed=%v %v", started, rep.Changed, rep.Data)
	}
	if v := serves(t, s, host); v != "1.0" && v != "1.1" {
		t.Errorf("restart: %s serves %q, want a version", host, v)
	}
	if rep := mustOK(t, host, "service", "status", svc); num(rep.Data["pid"]) != restarted {
		t.Errorf("status after restart: pid %v, the restart reported %d", rep.Data["pid"], restarted)
	}
}

// answers reports whether the host's app port accepts a TCP connection.
func answers(h *stage.Host) bool {
	c, err := net.DialTimeout("tcp", strings.TrimPrefix(h.AppURL, "http://"), time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// serves returns the version host's app serves. The service plugin returns
// once runit has kept the app up for a second, and the app listens before
// that, so one GET must do; a few retries only absorb a slow -race machine.
func serves(t *testing.T, s *stage.Stage, host string) string {
	t.Helper()
	var err error
	for range 20 {
		var v string
		if v, err = s.Serves(context.Background(), host); err == nil {
			return v
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("%s's app does not answer: %v", host, err)
	return ""
}
