package deploy

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signetbus/signet/workflows"
	"github.com/signetbus/signet/workflows/fleettest"
)

// outWatch records, before every call reaches a host, the hosts out of
// rotation in the simulated fleet (drained on the load balancers or in
// maintenance), and the most seen at once.
type outWatch struct {
	mu   sync.Mutex
	peak int
	at   []string
	zone map[string]int // most seen at once per zone
}

func watchOut(f *fleettest.Fleet) *outWatch {
	w := &outWatch{zone: map[string]int{}}
	f.Hook = func(ctx context.Context, host string, c workflows.Call) {
		var out []string
		zones := map[string]int{}
		for _, h := range []string{"web1", "web2", "web3", "web4", "web5", "web6", "web7", "web8", "web9"} {
			if n := f.Node(h); n.Maintenance || f.IsDrained(h) {
				out = append(out, h)
				zones[n.Facts["zone"]]++
			}
		}
		w.mu.Lock()
		if len(out) > w.peak {
			w.peak, w.at = len(out), out
		}
		for z, n := range zones {
			w.zone[z] = max(w.zone[z], n)
		}
		w.mu.Unlock()
		time.Sleep(time.Millisecond) // let the hosts in progress overlap
	}
	return w
}

// TestDeployFailureBatchMateFinishes: by default, when a host fails, the
// other hosts of its batch finish their own steps and go back into
// rotation; no new host starts.
func TestDeployFailureBatchMateFinishes(t *testing.T) {
	f := fleet9()
	f.Fail["web1 package.update"] = "apt: broken package"
	o := opts(t, f, workflows.NewMemStore(), &bytes.Buffer{})
	recap, err := Run(context.Background(), nil, o)
	var se *workflows.StepError
	if !errors.As(err, &se) || se.Host != "web1" || err.Error() != "web1: update: apt: broken package" {
		t.Fatalf("error = %v, want web1's step error as before", err)
	}
	for _, h := range []string{"web2", "web3"} {
		if got := recap.Host(h).Status; got != workflows.HostDone {
			t.Errorf("%s (batch-mate) status = %s, want done", h, got)
		}
		if got := hostCalls(f, h); !reflect.DeepEqual(got, fullSteps) {
			t.Errorf("%s calls = %v, want every step", h, got)
		}
		if n := f.Node(h); n.Maintenance || f.IsDrained(h) || !n.Running || n.Installed != "1.4.2" {
			t.Errorf("%s: %+v drained=%v, want back in rotation at 1.4.2", h, n, f.IsDrained(h))
		}
	}
	for _, h := range []string{"web4", "web5", "web6", "web7", "web8", "web9"} {
		if got := recap.Host(h).Status; got != workflows.HostPending || len(hostCalls(f, h)) != 0 {
			t.Errorf("%s: %s, calls %v; want untouched", h, got, hostCalls(f, h))
		}
	}
	if len(recap.OutOfRotation) != 1 || recap.OutOfRotation[0].Host != "web1" {
		t.Errorf("out of rotation %v, want only web1", recap.OutOfRotation)
	}
	checkOutOfRotation(t, f, recap)
}

// TestDeployMaxFailures: within the failure budget the run goes on past
// failed hosts, leaves each out of rotation and names it; the failure past
// the budget stops dispatching.
func TestDeployMaxFailures(t *testing.T) {
	t.Run("within", func(t *testing.T) {
		f := fleet9()
		f.Fail["web2 package.update"] = "apt: broken package"
		o := opts(t, f, workflows.NewMemStore(), &bytes.Buffer{})
		o.Policy = Policy{MaxFailures: "1"}
		recap, err := Run(context.Background(), nil, o)
		var fe *workflows.FailuresError
		if !errors.As(err, &fe) || fe.Spent || len(fe.Failures) != 1 || fe.Failures[0].Host != "web2" {
			t.Fatalf("error = %v, want one failure within the budget", err)
		}
		if recap.Status != workflows.StatusFailed || recap.Limits == nil || recap.Limits.Failures != 1 || recap.Limits.MaxFailures != 1 {
			t.Errorf("recap status %s limits %+v", recap.Status, recap.Limits)
		}
		for _, h := range recap.Hosts {
			want := workflows.HostDone
			if h.Host == "web2" {
				want = workflows.HostFailed
			}
			if h.Status != want {
				t.Errorf("%s: %s, want %s", h.Host, h.Status, want)
			}
		}
		if len(recap.OutOfRotation) != 1 || recap.OutOfRotation[0].Host != "web2" {
			t.Errorf("out of rotation %v, want web2", recap.OutOfRotation)
		}
		checkOutOfRotation(t, f, recap)
		var text bytes.Buffer
		recap.WriteText(&text)
		if !strings.Contains(text.String(), "policy: max_unavailable 3, max_failures 1, on_failure hold; 1 failed") {
			t.Errorf("recap text lacks the policy line:\n%s", text.String())
		}
	})
	t.Run("spent", func(t *testing.T) {
		f := fleet9()
		f.Fail["web2 package.update"] = "apt: broken package"
		f.Fail["web5 package.update"] = "apt: broken package"
		f.Fail["web8 package.update"] = "apt: broken package"
		o := opts(t, f, workflows.NewMemStore(), &bytes.Buffer{})
		o.Policy = Policy{MaxFailures: "1", MaxUnavailable: "5"}
		recap, err := Run(context.Background(), nil, o)
		var fe *workflows.FailuresError
		if !errors.As(err, &fe) || !fe.Spent || len(fe.Failures) != 2 {
			t.Fatalf("error = %v, want the budget spent after two failures", err)
		}
		if !strings.Contains(err.Error(), "2 hosts failed, more than max_failures 1 allows") {
			t.Errorf("error text %q", err)
		}
		for _, h := range []string{"web7", "web8", "web9"} {
			if got := recap.Host(h).Status; got != workflows.HostPending {
				t.Errorf("%s: %s, want pending: the budget was spent", h, got)
			}
		}
		for _, h := range []string{"web4", "web6"} {
			if got := recap.Host(h).Status; got != workflows.HostDone {
				t.Errorf("%s (batch-mate of the failure that spent the budget): %s, want done", h, got)
			}
		}
		checkOutOfRotation(t, f, recap)
	})
}

// TestDeployMaxUnavailable: hosts that failed and were left out count
// against max_unavailable, so batches shrink to fit; when the hosts left
// out fill the cap, no host starts.
func TestDeployMaxUnavailable(t *testing.T) {
	t.Run("fleet", func(t *testing.T) {
		f := fleet9()
		w := watchOut(f)
		f.Fail["web1 package.update"] = "apt: broken package"
		o := opts(t, f, workflows.NewMemStore(), &bytes.Buffer{})
		o.Policy = Policy{MaxFailures: "1", MaxUnavailable: "2"}
		recap, err := Run(context.Background(), nil, o)
		var fe *workflows.FailuresError
		if !errors.As(err, &fe) || fe.Spent || fe.Capacity != nil {
			t.Fatalf("error = %v, want one failure within the budget", err)
		}
		if w.peak > 2 || recap.Limits.PeakUnavailable > 2 {
			t.Errorf("out of rotation at once: %d (%v), engine counted %d; cap 2", w.peak, w.at, recap.Limits.PeakUnavailable)
		}
		if w.peak != 2 {
			t.Errorf("out of rotation at once: at most %d, want the cap (2) reached", w.peak)
		}
		for _, h := range recap.Hosts {
			if h.Host != "web1" && h.Status != workflows.HostDone {
				t.Errorf("%s: %s, want done", h.Host, h.Status)
			}
		}
	})
	t.Run("full", func(t *testing.T) {
		f := fleet9()
		w := watchOut(f)
		f.Fail["web1 package.update"] = "apt: broken package"
		f.Fail["web2 package.update"] = "apt: broken package"
		o := opts(t, f, workflows.NewMemStore(), &bytes.Buffer{})
		o.Policy = Policy{MaxFailures: "5", MaxUnavailable: "2"}
		recap, err := Run(context.Background(), nil, o)
		var ce *workflows.CapacityError
		if !errors.As(err, &ce) || ce.Host != "web3" || !slices.Equal(ce.Out, []string{"web1", "web2"}) {
			t.Fatalf("error = %v, want web3 not started for the cap", err)
		}
		if w.peak > 2 {
			t.Errorf("out of rotation at once: %d (%v), cap 2", w.peak, w.at)
		}
		for _, h := range []string{"web3", "web4", "web9"} {
			if got := recap.Host(h).Status; got != workflows.HostPending || len(hostCalls(f, h)) != 0 {
				t.Errorf("%s: %s, want untouched", h, got)
			}
		}
	})
	t.Run("zone", func(t *testing.T) {
		f := fleet9() // zones a: web1 web4 web7, b: web2 web5 web8, c: web3 web6 web9
		w := watchOut(f)
		f.Fail["web1 package.update"] = "apt: broken package"
		o := opts(t, f, workflows.NewMemStore(), &bytes.Buffer{})
		o.Policy = Policy{MaxFailures: "2", MaxUnavailablePerZone: "1"}
		recap, err := Run(context.Background(), nil, o)
		var ce *workflows.CapacityError
		if !errors.As(err, &ce) || ce.Host != "web4" || !slices.Equal(ce.Skipped, []string{"web4", "web7"}) {
			t.Fatalf("error = %v, want web4 and web7 (zone a) not started", err)
		}
		for z, n := range w.zone {
			if n > 1 {
				t.Errorf("zone %s: %d hosts out of rotation at once, cap 1", z, n)
			}
		}
		for _, h := range []string{"web2", "web3", "web5", "web6", "web8", "web9"} {
			if got := recap.Host(h).Status; got != workflows.HostDone {
				t.Errorf("%s: %s, want done: other zones go on", h, got)
			}
		}
	})
}

func TestPlanShowsPolicy(t *testing.T) {
	f := fleet9()
	var out bytes.Buffer
	o := opts(t, f, workflows.NewMemStore(), &out)
	o.Plan, o.Format = true, "text"
	o.Policy = Policy{MaxUnavailable: "25%", MaxUnavailablePerZone: "50%", MaxFailures: "1", OnFailure: "stop_now"}
	if _, err := Run(context.Background(), nil, o); err != nil {
		t.Fatal(err)
	}
	want := "policy: max_unavailable 2, max_unavailable_per_zone 50% (a 1, b 1, c 1), max_failures 1, on_failure stop_now\n"
	if !strings.Contains(out.String(), want) {
		t.Errorf("plan lacks %q:\n%s", want, out.String())
	}
	o.Policy = Policy{MaxFailures: "lots"}
	if _, err := Run(context.Background(), nil, o); err == nil || !strings.Contains(err.Error(), "max_failures: want a number of hosts") {
		t.Errorf("bad max_failures: %v", err)
	}
}

// TestResumeBringsBackLeftOutFirst: a host an earlier attempt left out of
// rotation holds a place under the cap, so a resume runs its batch first
// (it frees the place) instead of finding the cap full.
func TestResumeBringsBackLeftOutFirst(t *testing.T) {
	f := fleet9()
	f.Fail["web5 package.update"] = "apt: broken package"
	store := workflows.NewMemStore()
	o := opts(t, f, store, &bytes.Buffer{})
	o.Policy = Policy{MaxUnavailable: "1"}
	recap, err := Run(context.Background(), nil, o)
	var se *workflows.StepError
	if !errors.As(err, &se) || se.Host != "web5" {
		t.Fatalf("error = %v, want web5's failure", err)
	}
	f.Update(func(f *fleettest.Fleet) { delete(f.Fail, "web5 package.update") })
	var out bytes.Buffer
	o.Output = &out
	recap2, err := Resume(context.Background(), nil, recap.Run, o)
	if err != nil || recap2.Status != workflows.StatusDone {
		t.Fatalf("resume: %v, want done", err)
	}
	var first []string
	for _, e := range events(t, &out) {
		if e.Type == workflows.EventBatchStart {
			first = e.Hosts
			break
		}
	}
	if !slices.Contains(first, "web5") {
		t.Errorf("resume's first batch %v, want web5's", first)
	}
	if recap2.Limits.PeakUnavailable > 1 {
		t.Errorf("resume had %d hosts out at once, cap 1", recap2.Limits.PeakUnavailable)
	}
}
