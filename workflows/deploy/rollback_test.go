package deploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/workflows"
	"github.com/signetbus/signet/workflows/fleettest"
)

// provLog records the provenance every call of a run carried.
type provLog struct {
	mu    sync.Mutex
	calls []string // "host agent.action reason"
	bad   []string
}

func (p *provLog) hook(want *bus.Provenance) func(ctx context.Context, host string, c workflows.Call) {
	return func(ctx context.Context, host string, c workflows.Call) {
		got := workflows.ProvenanceFrom(ctx)
		p.mu.Lock()
		defer p.mu.Unlock()
		if got == nil || got.Run == "" || got.Ticket != want.Ticket || got.BuildURL != want.BuildURL {
			p.bad = append(p.bad, host+" "+c.Agent+"."+c.Action)
			return
		}
		p.calls = append(p.calls, host+" "+c.Agent+"."+c.Action+" "+got.Reason)
	}
}

// TestRollbackRestoresEveryTouchedHost: with on_failure rollback and one
// host per batch, web1 and web2 are deployed, web3's new version fails
// its health check. The run starts nothing more and brings all three back
// to 1.4.1, in rotation; web4 and after are never touched. Every call
// carries the run's provenance; the rollback calls carry the reason.
func TestRollbackRestoresEveryTouchedHost(t *testing.T) {
	f := fleet9()
	f.Hook = func(ctx context.Context, host string, c workflows.Call) {
		if host == "web3" && c.Agent == "health" {
			f.Update(func(f *fleettest.Fleet) { f.Nodes["web3"].Unhealthy = f.Nodes["web3"].Installed == "1.4.2" })
		}
	}
	prov := &provLog{}
	want := &bus.Provenance{Ticket: "CHG-7", BuildURL: "https://ci.example.com/job/app/42/"}
	inner := f.Hook
	f.Hook = func(ctx context.Context, host string, c workflows.Call) {
		prov.hook(want)(ctx, host, c)
		inner(ctx, host, c)
	}
	var out bytes.Buffer
	o := opts(t, f, workflows.NewMemStore(), &out)
	o.App.BatchSize = "1"
	o.Policy.OnFailure = workflows.OnFailureRollback
	o.Provenance = Provenance{Ticket: want.Ticket, BuildURL: want.BuildURL}
	recap, err := Run(context.Background(), nil, o)
	if err == nil || !strings.Contains(err.Error(), "web3: health:") {
		t.Fatalf("error = %v, want web3's health failure", err)
	}
	order := hostOrder(t, &out)
	if len(order) < 3 {
		t.Fatalf("hosts started: %v", order)
	}
	touched, failed := order[:2], order[2]
	for _, h := range append(touched, failed) {
		n := f.Node(h)
		if n.Installed != "1.4.1" || !n.Running || n.Maintenance || f.IsDrained(h) {
			t.Errorf("%s after rollback = %+v drained=%v, want 1.4.1 running, in rotation", h, n, f.IsDrained(h))
		}
		hr := recap.Host(h)
		if hr.Status != workflows.HostRolledBack || hr.Rollback != "rolled back from 1.4.2 to 1.4.1" {
			t.Errorf("recap %s = %+v, want rolled_back from 1.4.2 to 1.4.1", h, hr)
		}
	}
	for _, h := range order[3:] {
		t.Errorf("%s was started after the failure", h)
	}
	for _, h := range []string{"web1", "web2", "web3", "web4", "web5", "web6", "web7", "web8", "web9"} {
		if recap.Host(h).Status == workflows.HostPending && len(hostCalls(f, h)) > 0 {
			t.Errorf("%s pending but called: %v", h, hostCalls(f, h))
		}
	}
	if len(recap.OutOfRotation) != 0 {
		t.Errorf("out of rotation: %v", recap.OutOfRotation)
	}
	var text bytes.Buffer
	recap.WriteText(&text)
	if !strings.Contains(text.String(), "rollback:\n") || !strings.Contains(text.String(), ": rolled back from 1.4.2 to 1.4.1\n") {
		t.Errorf("text recap does not list the rollback:\n%s", text.String())
	}
	// Provenance: every call carried the run, ticket and build; the
	// rollback's update of every touched host carried the reason.
	prov.mu.Lock()
	defer prov.mu.Unlock()
	if len(prov.bad) > 0 {
		t.Errorf("calls without the run's provenance: %v", prov.bad)
	}
	for _, h := range append(touched, failed) {
		found := false
		for _, c := range prov.calls {
			if strings.HasPrefix(c, h+" package.update rollback of run "+recap.Run+" after web3: health:") {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: no rollback update carrying the reason in %v", h, prov.calls)
		}
	}
}

// hostOrder is the order the hosts started in (first step_start).
func hostOrder(t *testing.T, out *bytes.Buffer) []string {
	var order []string
	seen := map[string]bool{}
	for _, e := range events(t, out) {
		if e.Type == workflows.EventStepStart && !e.Rollback && !seen[e.Host] {
			seen[e.Host] = true
			order = append(order, e.Host)
		}
	}
	return order
}

// TestRollbackFreshInstall: a host that had no version before the run is
// not rolled back (there is nothing to go back to) and the recap says so;
// the package is not removed.
func TestRollbackFreshInstall(t *testing.T) {
	f := fleet9()
	var out bytes.Buffer
	o := opts(t, f, workflows.NewMemStore(), &out)
	o.Format = "text"
	o.App.BatchSize = "1"
	o.Policy.OnFailure = workflows.OnFailureRollback
	// The first host has nothing installed; the second fails.
	var first, second string
	f.Hook = func(ctx context.Context, host string, c workflows.Call) {
		if c.Agent != "package" || c.Action != "status" {
			return
		}
		f.Update(func(f *fleettest.Fleet) {
			switch {
			case first == "":
				first = host
				f.Nodes[host].Installed, f.Nodes[host].Previous = "", ""
			case second == "" && host != first:
				second = host
				f.Nodes[host].Held = true
			}
		})
	}
	recap, err := Run(context.Background(), nil, o)
	if err == nil {
		t.Fatal("the run did not fail")
	}
	hr := recap.Host(first)
	if f.Node(first).Installed != "1.4.2" || hr.Status != workflows.HostDone || hr.Rollback != "not rolled back: no previous version (fresh install of 1.4.2); left at 1.4.2" {
		t.Errorf("fresh host %s: installed %s, recap %+v", first, f.Node(first).Installed, hr)
	}
	if f.IsDrained(first) {
		t.Errorf("fresh host %s left drained", first)
	}
	// The progress says it where it happens, not only in the recap.
	if want := fmt.Sprintf("  %-10s done  not rolled back: no previous version (fresh install of 1.4.2); left at 1.4.2\n", first); !strings.Contains(out.String(), want) {
		t.Errorf("progress lacks %q:\n%s", want, out.String())
	}
}

// TestRollbackDigestVars: the update carries the deployed version's
// digest, the rollback's update the previous version's.
func TestRollbackDigestVars(t *testing.T) {
	f := fleet9()
	const d142, d141 = "1111111111111111111111111111111111111111111111111111111111111111", "2222222222222222222222222222222222222222222222222222222222222222"
	var mu sync.Mutex
	var seen []string
	f.Hook = func(ctx context.Context, host string, c workflows.Call) {
		if c.Agent == "package" && c.Action == "update" {
			mu.Lock()
			seen = append(seen, host+" "+str(c.Params["version"])+" "+str(c.Params["sha256"]))
			mu.Unlock()
		}
		if c.Agent == "health" {
			f.Update(func(f *fleettest.Fleet) { f.Nodes[host].Unhealthy = true })
		}
	}
	o := opts(t, f, workflows.NewMemStore(), &bytes.Buffer{})
	o.App.BatchSize = "1"
	o.App.SHA256 = map[string]string{"1.4.1": d141}
	o.Policy.OnFailure = workflows.OnFailureRollback
	o.Provenance.SHA256 = d142
	recap, err := Run(context.Background(), nil, o)
	if err == nil {
		t.Fatal("the run did not fail")
	}
	h := recap.Hosts[0].Host
	for _, r := range recap.Hosts {
		if r.Status != workflows.HostPending {
			h = r.Host
		}
	}
	want := []string{h + " 1.4.2 " + d142, h + " 1.4.1 " + d141}
	if strings.Join(seen, "|") != strings.Join(want, "|") {
		t.Errorf("updates = %v, want %v", seen, want)
	}
}

func str(v any) string { s, _ := v.(string); return s }

// TestRollbackAfterResume: the first attempt deploys one host and is
// stopped; the resumed attempt fails on the next host. The rollback also
// restores the host of the first attempt, from the previous version
// recorded in the run state before it was touched, and the resumed run's
// requests still carry the ticket and build URL recorded at the start.
func TestRollbackAfterResume(t *testing.T) {
	f := fleet9()
	store := workflows.NewMemStore()
	soft := make(chan struct{})
	o := opts(t, f, store, nil)
	o.App.BatchSize = "1"
	o.Policy.OnFailure = workflows.OnFailureRollback
	o.Provenance = Provenance{Ticket: "CHG-9", BuildURL: "https://ci.example.com/job/9/"}
	o.Output, o.Format = &signalWriter{match: `"type":"host_done","batch":1,`, ch: soft}, "json"
	recap, err := Run(context.Background(), soft, o)
	if !errors.Is(err, workflows.ErrStopped) {
		t.Fatalf("first attempt: %v, want stopped", err)
	}
	var first string
	for _, h := range recap.Hosts {
		if h.Status == workflows.HostDone {
			first = h.Host
		}
	}
	if first == "" || f.Node(first).Installed != "1.4.2" {
		t.Fatalf("first attempt recap %+v", recap.Hosts)
	}
	// Whatever the hosts say now, the recorded previous version counts:
	// the first host's package database forgets 1.4.1.
	f.Update(func(f *fleettest.Fleet) { f.Nodes[first].Previous = "" })
	prov := &provLog{}
	f.Hook = func(ctx context.Context, host string, c workflows.Call) {
		prov.hook(&bus.Provenance{Ticket: "CHG-9", BuildURL: "https://ci.example.com/job/9/"})(ctx, host, c)
		if c.Agent == "health" && host != first {
			f.Update(func(f *fleettest.Fleet) { f.Nodes[host].Unhealthy = f.Nodes[host].Installed == "1.4.2" })
		}
	}
	r := opts(t, f, store, &bytes.Buffer{})
	r.App.BatchSize = "1"
	r.Version, r.Env = "", ""
	r.Policy.OnFailure = workflows.OnFailureRollback
	recap, err = Resume(context.Background(), nil, recap.Run, r)
	if err == nil {
		t.Fatal("the resumed attempt did not fail")
	}
	hr := recap.Host(first)
	if hr.Status != workflows.HostRolledBack || hr.Rollback != "rolled back from 1.4.2 to 1.4.1" || f.Node(first).Installed != "1.4.1" || f.IsDrained(first) {
		t.Errorf("%s after the resumed run's rollback: recap %+v, node %+v drained=%v", first, hr, f.Node(first), f.IsDrained(first))
	}
	prov.mu.Lock()
	defer prov.mu.Unlock()
	if len(prov.bad) > 0 {
		t.Errorf("resumed calls without the recorded provenance: %v", prov.bad)
	}
}
