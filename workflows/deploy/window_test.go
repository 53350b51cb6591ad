package deploy

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signetbus/signet/workflows"
)

// TestWindowSlowHostDoesNotHoldTheOthers: with strategy window, a host
// stuck in its update does not hold up the hosts behind it: every host of
// the other zones is deployed while it waits, and only when they are done
// is it let go. In lock-step batches the same run would wait for it before
// starting batch 2 (the test would time out). At no call are more hosts out
// of rotation than max_unavailable (the batch size, 3), nor two of one zone.
func TestWindowSlowHostDoesNotHoldTheOthers(t *testing.T) {
	f := fleet9()
	w := watchOut(f)
	watch := f.Hook
	release := make(chan struct{})
	var once sync.Once
	var mu sync.Mutex
	done := map[string]bool{}
	held := false
	f.Hook = func(ctx context.Context, host string, c workflows.Call) {
		watch(ctx, host, c)
		if c.Agent == "maintenance" && c.Action == "end" && host != "web1" {
			mu.Lock()
			done[host] = true
			// Zones b and c: web2 web3 web5 web6 web8 web9. Zone a (web4,
			// web7) waits for web1 under the zone cap.
			if len(done) == 6 {
				once.Do(func() { close(release) })
			}
			mu.Unlock()
		}
		if host == "web1" && c.Agent == "package" && c.Action == "update" {
			select {
			case <-release:
			case <-time.After(30 * time.Second):
				mu.Lock()
				held = true
				mu.Unlock()
			}
		}
	}
	var out bytes.Buffer
	o := opts(t, f, workflows.NewMemStore(), &out)
	o.Policy = Policy{Strategy: workflows.StrategyWindow}
	recap, err := Run(context.Background(), nil, o)
	if err != nil {
		t.Fatal(err)
	}
	if held {
		t.Fatal("web1 was never released: the window waited for it like a batch")
	}
	for _, h := range recap.Hosts {
		if h.Status != workflows.HostDone || f.Node(h.Host).Installed != "1.4.2" {
			t.Errorf("%s: %s at %s, want done at 1.4.2", h.Host, h.Status, f.Node(h.Host).Installed)
		}
	}
	if w.peak > 3 {
		t.Errorf("peak out of rotation %d (%v), want at most 3", w.peak, w.at)
	}
	for z, n := range w.zone {
		if n > 1 {
			t.Errorf("zone %s had %d hosts out at once, want at most 1", z, n)
		}
	}
	if recap.Limits == nil || recap.Limits.Strategy != workflows.StrategyWindow || recap.Limits.PeakUnavailable > 3 {
		t.Errorf("recap limits %+v, want window with peak at most 3", recap.Limits)
	}
	if !strings.Contains(recap.Limits.String(), "sliding window, max_unavailable 3, max_unavailable_per_zone 1") {
		t.Errorf("limits %q", recap.Limits)
	}
}

// TestWindowFailureStopsDispatch: in a window, a failure past the budget
// (max_failures 0) starts no further host; the hosts in progress finish and
// go back into rotation.
func TestWindowFailureStopsDispatch(t *testing.T) {
	f := fleet9()
	w := watchOut(f)
	f.Fail["web2 maintenance.start"] = "alertmanager: 503"
	o := opts(t, f, workflows.NewMemStore(), &bytes.Buffer{})
	o.Policy = Policy{Strategy: workflows.StrategyWindow}
	recap, err := Run(context.Background(), nil, o)
	var se *workflows.StepError
	if !errors.As(err, &se) || se.Host != "web2" {
		t.Fatalf("err = %v, want web2's failure", err)
	}
	for _, h := range []string{"web4", "web5", "web6", "web7", "web8", "web9"} {
		if got := recap.Host(h).Status; got != workflows.HostPending || len(hostCalls(f, h)) != 0 {
			t.Errorf("%s: %s, calls %v; want untouched after the failure", h, got, hostCalls(f, h))
		}
	}
	for _, h := range []string{"web1", "web3"} {
		if st := recap.Host(h).Status; st != workflows.HostDone && st != workflows.HostPending {
			t.Errorf("%s: %s, want done (it was in progress) or untouched", h, st)
		}
		if n := f.Node(h); n.Maintenance || f.IsDrained(h) {
			t.Errorf("%s left out of rotation", h)
		}
	}
	if w.peak > 3 {
		t.Errorf("peak %d, want at most 3", w.peak)
	}
}

// TestWindowMaxUnavailable: an explicit max_unavailable and a per-zone cap
// hold in a window with failures within the budget: the failed hosts stay
// counted out of rotation.
func TestWindowMaxUnavailable(t *testing.T) {
	f := fleet9()
	w := watchOut(f)
	f.Fail["web2 package.update"] = "apt: broken"
	f.Fail["web6 package.update"] = "apt: broken"
	o := opts(t, f, workflows.NewMemStore(), &bytes.Buffer{})
	o.Policy = Policy{Strategy: workflows.StrategyWindow, MaxUnavailable: "4", MaxUnavailablePerZone: "2", MaxFailures: "2"}
	recap, err := Run(context.Background(), nil, o)
	var fe *workflows.FailuresError
	if !errors.As(err, &fe) || len(fe.Failures) != 2 || fe.Spent {
		t.Fatalf("err = %v, want two failures within the budget", err)
	}
	for _, h := range recap.Hosts {
		want := workflows.HostDone
		if h.Host == "web2" || h.Host == "web6" {
			want = workflows.HostFailed
		}
		if h.Status != want {
			t.Errorf("%s: %s, want %s", h.Host, h.Status, want)
		}
	}
	if w.peak > 4 {
		t.Errorf("peak %d (%v), want at most 4", w.peak, w.at)
	}
	for z, n := range w.zone {
		if n > 2 {
			t.Errorf("zone %s: %d out at once, want at most 2", z, n)
		}
	}
}

// TestWindowValidate: a bad strategy, or a pause with a window, is refused.
func TestWindowValidate(t *testing.T) {
	for _, b := range []workflows.Batching{{Strategy: "fast"}, {Strategy: "window", Pause: time.Second}} {
		if err := b.Validate(); err == nil {
			t.Errorf("%+v accepted", b)
		}
	}
	a, err := ParseApp(strings.NewReader(appYAML + "    strategy: window\n"))
	if err != nil {
		t.Fatal(err)
	}
	if e, _ := a.ForEnv("dev"); e.Strategy != workflows.StrategyWindow {
		t.Errorf("envs.dev strategy = %q, want window", e.Strategy)
	}
}
