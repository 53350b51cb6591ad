package plugins

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/signetbus/signet/bus"
)

// TestHAProxy drives the haproxy plugin through the bus against the stage's
// real HAProxy (every host's plugin talks to the same admin socket): status
// lists the three servers UP; a drain of web3 broadcast to every host with
// the plugin answers ok from all three, HAProxy's own show stat then says
// DRAIN and a dozen requests through the frontend reach web1 and web2 but
// never web3; enable (server defaulting to the host's identity) brings web3
// back UP and the frontend reaches it again; a backend HAProxy does not have
// answers ok with matched=0 and changes nothing.
func TestHAProxy(t *testing.T) {
	s, client := sharedStage(t)
	ctx := context.Background()
	const drained = "web3"
	waitAllUp(t)
	t.Cleanup(func() {
		do(t, drained, "haproxy", "enable", map[string]any{"backend": s.App, "server": drained})
	})

	rep := mustOK(t, "web1", "haproxy", "status", map[string]any{"backend": s.App})
	if rep.Changed || num(rep.Data["matched"]) != 1 {
		t.Errorf("status: want changed=false, matched=1; got changed=%v matched=%v", rep.Changed, rep.Data["matched"])
	}
	list := servers(t, rep)
	if len(list) != len(s.Hosts) {
		t.Fatalf("status: want %d servers, got %v", len(s.Hosts), list)
	}
	for i, sv := range list {
		if sv["server"] != s.Hosts[i].Identity || sv["backend"] != s.App || sv["instance"] != "main" ||
			// The plugin drops the "* " HAProxy shows while a check runs.
			sv["status"] != "UP" || sv["check_status"] != "L7OK" || sv["admin_state"] != "ready" {
			t.Errorf("status: server %d: want %s/%s UP, L7OK, ready on main; got %v", i, s.App, s.Hosts[i].Identity, sv)
		}
	}

	// The operator's broadcast: every host with the plugin, server named.
	qctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	out, err := client.Do(qctx, bus.Query{Agent: "haproxy", Action: "drain", Timeout: 45 * time.Second,
		Params: map[string]any{"backend": s.App, "server": drained, "timeout": "20s"}})
	if err != nil {
		t.Fatalf("broadcast drain: %v", err)
	}
	if len(out.Results) != len(s.Hosts) {
		t.Fatalf("broadcast drain: want an answer from each of %d hosts, got %+v", len(s.Hosts), out.Results)
	}
	changed := 0
	for i, r := range out.Results {
		if r.Identity != s.Hosts[i].Identity || r.Status != bus.ResultOK {
			t.Fatalf("broadcast drain: %s answered %s: %s", r.Identity, r.Status, r.Error)
		}
		if num(r.Reply.Data["matched"]) != 1 {
			t.Errorf("broadcast drain: %s matched %v instances, want 1 (it shares the stage's haproxy)", r.Identity, r.Reply.Data["matched"])
		}
		for _, sv := range servers(t, r.Reply) {
			if sv["server"] != drained || sv["status"] != "DRAIN" || sv["admin_state"] != "drain" || num(sv["sessions"]) != 0 {
				t.Errorf("broadcast drain: %s reports %v, want %s DRAIN with no sessions", r.Identity, sv, drained)
			}
		}
		if r.Reply.Changed {
			changed++
		}
	}
	// The hosts share one HAProxy: whoever came first changed it.
	if changed < 1 {
		t.Errorf("broadcast drain: no host reported a change")
	}
	if st := statOf(t, drained); st.Status != "DRAIN" {
		t.Fatalf("show stat after drain: %s is %q, want DRAIN", drained, st.Status)
	}
	seen, err := s.ThroughFrontend(ctx, 12)
	if err != nil {
		t.Fatal(err)
	}
	if n := hits(seen, drained); n != 0 {
		t.Errorf("through the frontend: the drained %s got %d of 12 new requests (%v)", drained, n, seen)
	}
	for _, h := range []string{"web1", "web2"} {
		if hits(seen, h) == 0 {
			t.Errorf("through the frontend: %s got none of 12 requests while %s drained (%v)", h, drained, seen)
		}
	}

	// Enable without server=: the server defaults to the host's identity.
	rep = mustOK(t, drained, "haproxy", "enable", map[string]any{"backend": s.App, "timeout": "20s"})
	list = servers(t, rep)
	if !rep.Changed || len(list) != 1 || list[0]["server"] != drained || list[0]["status"] != "UP" || list[0]["admin_state"] != "ready" {
		t.Fatalf("enable: want changed and %s UP and ready, got changed=%v %v", drained, rep.Changed, list)
	}
	if st := statOf(t, drained); st.Status != "UP" {
		t.Errorf("show stat after enable: %s is %q, want UP", drained, st.Status)
	}
	if seen, err = s.ThroughFrontend(ctx, 12); err != nil {
		t.Fatal(err)
	}
	if hits(seen, drained) == 0 {
		t.Errorf("through the frontend: %s got none of 12 requests after enable (%v)", drained, seen)
	}

	// A broadcast reaches hosts whose HAProxy lacks the backend: ok, nothing done.
	rep = mustOK(t, "web1", "haproxy", "drain", map[string]any{"backend": "nosuch", "server": drained})
	if rep.Changed || num(rep.Data["matched"]) != 0 || !strings.Contains(rep.Summary, "no server nosuch/"+drained) {
		t.Errorf("drain of an unknown backend: want ok, changed=false, matched=0 and a summary naming nosuch/%s; got changed=%v %q %v", drained, rep.Changed, rep.Summary, rep.Data)
	}
	if st := statOf(t, drained); st.Status != "UP" {
		t.Errorf("show stat after the unknown-backend drain: %s is %q, want UP", drained, st.Status)
	}
}

// hits counts the frontend answers ("demo 1.0 on web2") from host.
func hits(seen map[string]int, host string) int {
	n := 0
	for body, c := range seen {
		if strings.HasSuffix(body, " on "+host) {
			n += c
		}
	}
	return n
}
