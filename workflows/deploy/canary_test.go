package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signetbus/signet/workflows"
	"github.com/signetbus/signet/workflows/fleettest"
	"github.com/signetbus/signet/workflows/gatelab"
)

// evlog is the Output of a JSON deploy: it decodes each event and calls
// hook on it synchronously, from the engine's goroutine.
type evlog struct {
	mu   sync.Mutex
	buf  []byte
	all  []workflows.Event
	hook func(workflows.Event)
}

func (e *evlog) Write(p []byte) (int, error) {
	e.mu.Lock()
	e.buf = append(e.buf, p...)
	var fresh []workflows.Event
	for {
		i := bytes.IndexByte(e.buf, '\n')
		if i < 0 {
			break
		}
		var ev workflows.Event
		if err := json.Unmarshal(e.buf[:i], &ev); err == nil {
			e.all = append(e.all, ev)
			fresh = append(fresh, ev)
		}
		e.buf = e.buf[i+1:]
	}
	hook := e.hook
	e.mu.Unlock()
	for _, ev := range fresh {
		if hook != nil {
			hook(ev)
		}
	}
	return len(p), nil
}

func (e *evlog) of(typ string) []workflows.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []workflows.Event
	for _, ev := range e.all {
		if ev.Type == typ {
			out = append(out, ev)
		}
	}
	return out
}

func canaryOpts(t *testing.T, f *fleettest.Fleet, store workflows.Store, out *evlog, c *workflows.Canary) Options {
	o := Options{App: newApp(t), Version: "1.4.2", Env: "prod", Yes: true, Output: out, Format: "json", Caller: f, Store: store, User: "alice@bastion"}
	o.App.Canary = c
	o.Rollout.DecisionPoll = 20 * time.Millisecond
	return o
}

// touched lists the hosts whose package was updated.
func touched(f *fleettest.Fleet) []string {
	var out []string
	for _, h := range []string{"web1", "web2", "web3", "web4", "web5", "web6", "web7", "web8", "web9"} {
		if f.Node(h).Installed == "1.4.2" {
			out = append(out, h)
		}
	}
	return out
}

// TestCanaryBakesThenPromotesItself: the canary host is deployed alone,
// watched (its health check) through the bake, promoted, then the rest
// of the fleet follows.
func TestCanaryBakesThenPromotesItself(t *testing.T) {
	f := fleet9()
	ev := &evlog{}
	var during []string
	ev.hook = func(e workflows.Event) {
		if e.Type == workflows.EventCanary && e.Status == workflows.CanaryBaking {
			during = touched(f)
		}
	}
	recap, err := Run(context.Background(), nil, canaryOpts(t, f, workflows.NewMemStore(), ev, &workflows.Canary{Hosts: []string{"web5"}, Bake: time.Second, Interval: 300 * time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(during, []string{"web5"}) {
		t.Fatalf("during the bake: want only the canary web5 updated, found %v", during)
	}
	if got := touched(f); len(got) != 9 || recap.Status != workflows.StatusDone {
		t.Fatalf("after promotion: want every host updated and the run done, found %v %s", got, recap.Status)
	}
	var phases []string
	for _, e := range ev.of(workflows.EventCanary) {
		phases = append(phases, e.Status)
	}
	if !slices.Equal(phases, []string{workflows.CanaryBaking, workflows.CanaryPromoted}) {
		t.Fatalf("want baking then promoted, found %v", phases)
	}
	checks := 0
	for _, e := range ev.of(workflows.EventStepDone) {
		if e.Step == "bake_health" && e.Host == "web5" {
			checks++
		}
	}
	if checks < 2 {
		t.Fatalf("want the canary's health checked at least twice in a 1s bake every 300ms, found %d", checks)
	}
	if b := ev.of(workflows.EventBatchStart); len(b) < 2 || !slices.Equal(b[0].Hosts, []string{"web5"}) {
		t.Fatalf("want the canary alone in the first batch, found %+v", b)
	}
}

// TestCanaryOnePerZone: one_per_zone picks the first host of each zone.
func TestCanaryOnePerZone(t *testing.T) {
	f := fleet9()
	cs, batches, err := workflows.PlanCanary(mustDiscover(t, f), &workflows.Canary{OnePerZone: true, Bake: time.Second}, workflows.Batching{BatchSize: "3"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cs.Hosts, []string{"web1", "web2", "web3"}) || !slices.Equal(batches[0], cs.Hosts) || len(slices.Concat(batches...)) != 9 {
		t.Fatalf("want web1 web2 web3 (zones a b c) first, found %v in %v", cs.Hosts, batches)
	}
	if _, _, err := workflows.PlanCanary(mustDiscover(t, f), &workflows.Canary{Hosts: []string{"web42"}, Bake: time.Second}, workflows.Batching{}, nil); err == nil || !strings.Contains(err.Error(), "web42") {
		t.Fatalf("an unknown canary host: want an error naming it, found %v", err)
	}
}

func mustDiscover(t *testing.T, f *fleettest.Fleet) []workflows.Host {
	hs, err := f.Discover(context.Background(), []string{"role=app", "env=prod"})
	if err != nil {
		t.Fatal(err)
	}
	return hs
}

// TestCanaryUnhealthyDuringBakeFails: a canary that turns unhealthy
// during the bake fails the run, named; no other host is touched.
func TestCanaryUnhealthyDuringBakeFails(t *testing.T) {
	f := fleet9()
	ev := &evlog{}
	ev.hook = func(e workflows.Event) {
		if e.Type == workflows.EventCanary && e.Status == workflows.CanaryBaking {
			f.Update(func(f *fleettest.Fleet) { f.Nodes["web5"].Unhealthy = true })
		}
	}
	_, err := Run(context.Background(), nil, canaryOpts(t, f, workflows.NewMemStore(), ev, &workflows.Canary{Hosts: []string{"web5"}, Bake: time.Hour, Interval: 100 * time.Millisecond}))
	var se *workflows.StepError
	if !errors.As(err, &se) || se.Host != "web5" || se.Step != "bake health" {
		t.Fatalf("want the bake's health check of web5 failed, found %v", err)
	}
	if got := touched(f); !slices.Equal(got, []string{"web5"}) {
		t.Fatalf("want only the canary touched, found %v", got)
	}
}

// TestCanaryManualPromoteFromAnotherClient: a manual canary waits after
// its bake; a second client records the promotion in the run state and
// the first one, still waiting, goes on with the fleet.
func TestCanaryManualPromoteFromAnotherClient(t *testing.T) {
	f := fleet9()
	store := workflows.NewMemStore()
	ev := &evlog{}
	waiting := make(chan string, 1)
	ev.hook = func(e workflows.Event) {
		if e.Type == workflows.EventCanary && e.Status == workflows.CanaryWaiting {
			waiting <- e.Run
		}
	}
	o := canaryOpts(t, f, store, ev, &workflows.Canary{Hosts: []string{"web5"}, Bake: time.Second, Interval: 200 * time.Millisecond, Promote: workflows.PromoteManual})
	type result struct {
		recap *workflows.Recap
		err   error
	}
	done := make(chan result, 1)
	go func() {
		r, err := Run(context.Background(), nil, o)
		done <- result{r, err}
	}()
	run := <-waiting
	st, err := store.Load(context.Background(), run)
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != workflows.StatusWaiting || st.Canary.Phase != workflows.CanaryWaiting {
		t.Fatalf("want the recorded run waiting, found %s %s", st.Status, st.Canary.Phase)
	}
	time.Sleep(300 * time.Millisecond) // the canary is still watched while it waits
	if got := touched(f); !slices.Equal(got, []string{"web5"}) {
		t.Fatalf("waiting: want only the canary touched, found %v", got)
	}
	second := canaryOpts(t, f, store, &evlog{}, nil)
	second.User = "bob@bastion"
	_, err = Decide(context.Background(), nil, Decision{Run: run, Decision: workflows.DecisionPromote}, second)
	var wc *WaitingClientError
	if !errors.As(err, &wc) || wc.Holder.Holder != "alice@bastion" {
		t.Fatalf("want the decision left to the waiting client, found %v", err)
	}
	r := <-done
	if r.err != nil || len(touched(f)) != 9 {
		t.Fatalf("after the promotion: want every host updated, found %v %v", touched(f), r.err)
	}
	st, _ = store.Load(context.Background(), run)
	if st.Status != workflows.StatusDone || st.Canary.DecidedBy != "bob@bastion" || st.Canary.Phase != workflows.CanaryPromoted {
		t.Fatalf("want the run done, promoted by bob, found %s %+v", st.Status, st.Canary)
	}
	checks := 0
	for _, e := range ev.of(workflows.EventStepDone) {
		if e.Step == "bake_health" {
			checks++
		}
	}
	if checks < 6 {
		t.Fatalf("want the canary checked during the bake and while waiting, found %d checks", checks)
	}
}

// TestCanaryWaitingSurvivesTheClient: the client waiting on a canary goes
// away; the run stays recorded as waiting on its canary, and `--abort`
// from another client ends it without touching another host, while
// `--promote` finishes it.
func TestCanaryWaitingSurvivesTheClient(t *testing.T) {
	for _, decision := range []string{workflows.DecisionAbort, workflows.DecisionPromote} {
		t.Run(decision, func(t *testing.T) {
			f := fleet9()
			store := workflows.NewMemStore()
			ev := &evlog{}
			ctx, cancel := context.WithCancel(context.Background())
			ev.hook = func(e workflows.Event) {
				if e.Type == workflows.EventCanary && e.Status == workflows.CanaryWaiting {
					cancel() // the client goes away
				}
			}
			_, err := Run(ctx, nil, canaryOpts(t, f, store, ev, &workflows.Canary{Hosts: []string{"web5"}, Bake: time.Second, Interval: 200 * time.Millisecond, Promote: workflows.PromoteManual}))
			var ie *workflows.InterruptedError
			if !errors.As(err, &ie) {
				t.Fatalf("want the run interrupted, found %v", err)
			}
			run := ev.of(workflows.EventRunStart)[0].Run
			second := canaryOpts(t, f, store, &evlog{}, nil)
			second.User = "bob@bastion"
			recap, err := Decide(context.Background(), nil, Decision{Run: run, Decision: decision}, second)
			st, _ := store.Load(context.Background(), run)
			if decision == workflows.DecisionAbort {
				var ae *workflows.CanaryAbortedError
				if !errors.As(err, &ae) || ae.By != "bob@bastion" || st.Status != workflows.StatusFailed || st.Canary.Phase != workflows.CanaryAborted {
					t.Fatalf("want the run aborted by bob and failed, found %v (%s)", err, st.Status)
				}
				if got := touched(f); !slices.Equal(got, []string{"web5"}) {
					t.Fatalf("want only the canary touched, found %v", got)
				}
				return
			}
			if err != nil || recap.Status != workflows.StatusDone || len(touched(f)) != 9 {
				t.Fatalf("want the promoted run done on every host, found %v %v", err, touched(f))
			}
			if _, err := Decide(context.Background(), nil, Decision{Run: run, Decision: workflows.DecisionAbort}, second); !errors.Is(err, workflows.ErrNotWaiting) {
				t.Fatalf("a decision on a finished run: want ErrNotWaiting, found %v", err)
			}
		})
	}
}

// TestGatesAbortAndPauseOnRealPrometheus: between batches, a metric made
// bad fails the run at the first check after it went bad, naming the
// gate, the query and the value; a metric that has no data pauses the
// run, which goes on once the data is back, and halts (resumable) when it
// stays away past inconclusive_for.
func TestGatesAbortAndPauseOnRealPrometheus(t *testing.T) {
	if gatelab.PrometheusBin() == "" {
		t.Skip("prometheus is not installed (apt install prometheus)")
	}
	m, err := gatelab.ServeMetrics()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p, err := gatelab.StartPrometheus(ctx, gatelab.PrometheusOptions{Dir: filepath.Join(t.TempDir(), "prom"), Targets: []string{m.Addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	lbl := map[string]string{"app": "middleware"}
	good := func() {
		m.Set("errors_ratio", lbl, 0.001)
		if err := p.WaitValue(ctx, "errors_ratio", "0.001"); err != nil {
			t.Error(err)
		}
	}
	gates := &workflows.Gates{Interval: 200 * time.Millisecond, Timeout: 2 * time.Second, InconclusiveFor: time.Minute,
		Checks: []workflows.Gate{{Name: "error-rate", Prometheus: &workflows.PromGate{URL: p.URL, Query: `errors_ratio{app="middleware"}`, Condition: "< 0.01"}}}}
	run := func(ev *evlog, g *workflows.Gates, store workflows.Store) (*fleettest.Fleet, *workflows.Recap, error) {
		f := fleet9()
		o := canaryOpts(t, f, store, ev, nil)
		o.App.Gates = g
		r, err := Run(ctx, nil, o)
		return f, r, err
	}

	t.Run("bad metric fails", func(t *testing.T) {
		good()
		ev := &evlog{}
		ev.hook = func(e workflows.Event) {
			if e.Type == workflows.EventBatchDone && e.Batch == 1 {
				m.Set("errors_ratio", lbl, 0.2)
				if err := p.WaitValue(ctx, "errors_ratio", "0.2"); err != nil {
					t.Error(err)
				}
			}
		}
		f, _, err := run(ev, gates, workflows.NewMemStore())
		var ge *workflows.GateError
		if !errors.As(err, &ge) || ge.Result.Gate != "error-rate" || !strings.Contains(err.Error(), `errors_ratio{app="middleware"}`) || !strings.Contains(err.Error(), "0.2") || !strings.Contains(err.Error(), "before batch 2") {
			t.Fatalf("want gate error-rate failed before batch 2 naming the query and 0.2, found %v", err)
		}
		if n := len(ev.of(workflows.EventGate)); n != 1 {
			t.Fatalf("want the run failed at the first check after the metric went bad, found %d checks", n)
		}
		if got := touched(f); len(got) != 3 {
			t.Fatalf("want only batch 1 (3 hosts) touched, found %v", got)
		}
	})

	t.Run("no data pauses", func(t *testing.T) {
		good()
		ev := &evlog{}
		ev.hook = func(e workflows.Event) {
			switch {
			case e.Type == workflows.EventBatchDone && e.Batch == 1:
				m.Delete("errors_ratio", lbl)
				if err := p.WaitValue(ctx, "errors_ratio", ""); err != nil {
					t.Error(err)
				}
			case e.Type == workflows.EventGate && e.Status == workflows.GateInconclusive && len(ev.of(workflows.EventGate)) == 3:
				go good() // the data comes back after three inconclusive checks
			}
		}
		f, recap, err := run(ev, gates, workflows.NewMemStore())
		if err != nil || recap.Status != workflows.StatusDone || len(touched(f)) != 9 {
			t.Fatalf("want the run paused, then done, found %v %v", err, touched(f))
		}
		var verdicts []string
		for _, e := range ev.of(workflows.EventGate) {
			verdicts = append(verdicts, e.Status)
		}
		if len(verdicts) < 4 || verdicts[0] != workflows.GateInconclusive || !strings.Contains(ev.of(workflows.EventGate)[0].Summary, "no data") || !slices.Contains(verdicts, workflows.GatePass) {
			t.Fatalf("want inconclusive (no data) checks, then passes, found %v", verdicts)
		}
	})

	t.Run("no data for too long halts, resumable", func(t *testing.T) {
		good()
		ev := &evlog{}
		ev.hook = func(e workflows.Event) {
			if e.Type == workflows.EventBatchDone && e.Batch == 1 {
				m.Delete("errors_ratio", lbl)
				if err := p.WaitValue(ctx, "errors_ratio", ""); err != nil {
					t.Error(err)
				}
			}
		}
		short := *gates
		short.InconclusiveFor = time.Second
		store := workflows.NewMemStore()
		f := fleet9()
		o := canaryOpts(t, f, store, ev, nil)
		o.App.Gates = &short
		_, err := Run(ctx, nil, o)
		var he *workflows.GateHaltError
		if !errors.As(err, &he) || !errors.Is(err, workflows.ErrStopped) || !strings.Contains(err.Error(), "no data") {
			t.Fatalf("want a halt on gates inconclusive (no data), found %v", err)
		}
		id := ev.of(workflows.EventRunStart)[0].Run
		if st, _ := store.Load(ctx, id); st.Status != workflows.StatusStopped {
			t.Fatalf("want the run recorded stopped, found %s", st.Status)
		}
		good()
		o.Output = &evlog{}
		if recap, err := Resume(ctx, nil, id, o); err != nil || recap.Status != workflows.StatusDone || len(touched(f)) != 9 {
			t.Fatalf("resumed with the data back: want done, found %v %v", err, touched(f))
		}
	})
}

// TestRolloutOverrides: the app file's canary and gates, per env, and as
// the command line overrides them.
func TestRolloutOverrides(t *testing.T) {
	yaml := appYAML + `  prod:
    canary: {hosts: [web2], bake: 5m, promote: manual}
    gates:
      checks:
        - name: up
          prometheus: {url: "http://prom:9090", query: up, condition: "== 1"}
`
	a, err := ParseApp(strings.NewReader(yaml))
	if err != nil {
		t.Fatal(err)
	}
	prod, err := a.ForEnv("prod")
	if err != nil {
		t.Fatal(err)
	}
	if prod.Canary == nil || prod.Canary.Hosts[0] != "web2" || prod.Gates == nil || prod.Gates.Checks[0].Name != "up" {
		t.Fatalf("envs.prod: want its canary and gates, found %+v %+v", prod.Canary, prod.Gates)
	}
	if dev, _ := a.ForEnv("dev"); dev.Canary != nil || dev.Gates != nil {
		t.Fatalf("envs.dev: want no canary or gates, found %+v %+v", dev.Canary, dev.Gates)
	}
	gf := filepath.Join(t.TempDir(), "gates.yaml")
	if err := os.WriteFile(gf, []byte("interval: 5s\nchecks:\n  - name: pages\n    alertmanager: {url: \"http://am:9093\", labels: {severity: page}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		ro   Rollout
		want func(*App) bool
		err  string
	}{
		{"per-zone", Rollout{Canary: []string{"per-zone"}, Bake: time.Minute}, func(a *App) bool {
			return a.Canary.OnePerZone && a.Canary.Hosts == nil && a.Canary.Bake == time.Minute && a.Canary.Promote == "manual"
		}, ""},
		{"hosts", Rollout{Canary: []string{"web1", "web4"}, Promote: "auto"}, func(a *App) bool { return len(a.Canary.Hosts) == 2 && a.Canary.Promote == "auto" }, ""},
		{"none", Rollout{Canary: []string{"none"}}, func(a *App) bool { return a.Canary == nil }, ""},
		{"gates file", Rollout{GatesFile: gf, InconclusiveFor: time.Minute}, func(a *App) bool {
			return a.Gates.Checks[0].Name == "pages" && a.Gates.Interval == 5*time.Second && a.Gates.InconclusiveFor == time.Minute
		}, ""},
		{"bad promote", Rollout{Promote: "later"}, nil, "auto or manual"},
		{"bad host", Rollout{Canary: []string{"web 1"}}, nil, "canary: hosts"},
	} {
		cp, _ := a.ForEnv("prod")
		err := tc.ro.apply(cp)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: want %q, found %v", tc.name, tc.err, err)
			}
			continue
		}
		if err != nil || !tc.want(cp) {
			t.Errorf("%s: %v, %+v %+v", tc.name, err, cp.Canary, cp.Gates)
		}
	}
	dev, _ := a.ForEnv("dev")
	if err := (Rollout{Bake: time.Minute}).apply(dev); err == nil || !strings.Contains(err.Error(), "need a canary") {
		t.Errorf("--bake without a canary: want an error, found %v", err)
	}
}

// TestCanaryDecisionKeptWhenTheClientStops: a promotion recorded while
// the waiting client is between two looks at the record is not erased by
// that client's last save when it stops; a resume acts on it.
func TestCanaryDecisionKeptWhenTheClientStops(t *testing.T) {
	f := fleet9()
	store := workflows.NewMemStore()
	ev := &evlog{}
	soft := make(chan struct{})
	ev.hook = func(e workflows.Event) {
		if e.Type != workflows.EventCanary || e.Status != workflows.CanaryWaiting {
			return
		}
		st, err := store.Load(context.Background(), e.Run)
		if err == nil {
			err = workflows.Decide(st, workflows.DecisionPromote, "bob@bastion", time.Now())
		}
		if err == nil {
			err = store.Save(context.Background(), st)
		}
		if err != nil {
			t.Error(err)
		}
		close(soft) // the client stops before it looks again
	}
	o := canaryOpts(t, f, store, ev, &workflows.Canary{Hosts: []string{"web5"}, Bake: time.Second, Interval: time.Hour, Promote: workflows.PromoteManual})
	o.Rollout.DecisionPoll = time.Hour
	_, err := Run(context.Background(), soft, o)
	if !errors.Is(err, workflows.ErrStopped) {
		t.Fatalf("want the run stopped, found %v", err)
	}
	run := ev.of(workflows.EventRunStart)[0].Run
	st, _ := store.Load(context.Background(), run)
	if st.Canary.Decision != workflows.DecisionPromote || st.Canary.DecidedBy != "bob@bastion" {
		t.Fatalf("the decision was erased by the stopping client: %+v", st.Canary)
	}
	o.Output = &evlog{}
	if recap, err := Resume(context.Background(), nil, run, o); err != nil || recap.Status != workflows.StatusDone || len(touched(f)) != 9 {
		t.Fatalf("resumed: want the promotion acted on, found %v %v", err, touched(f))
	}
}

// TestCanaryRolledBackOnFailure: with on_failure: rollback, a canary
// that fails its bake is restored to the version it had, through the
// rollback's own steps (back in rotation only after its health check),
// and the recap says so; no other host is touched. Before, a bake or gate
// failure was not a host failure, and the canary kept the bad version.
func TestCanaryRolledBackOnFailure(t *testing.T) {
	f := fleet9()
	before := f.Node("web5").Installed
	ev := &evlog{}
	ev.hook = func(e workflows.Event) {
		switch {
		case e.Type == workflows.EventCanary && e.Status == workflows.CanaryBaking:
			f.Update(func(f *fleettest.Fleet) { f.Nodes["web5"].Unhealthy = true })
		case e.Type == workflows.EventStepStart && e.Rollback && e.Host == "web5":
			// The version it goes back to serves.
			f.Update(func(f *fleettest.Fleet) { f.Nodes["web5"].Unhealthy = false })
		}
	}
	o := canaryOpts(t, f, workflows.NewMemStore(), ev, &workflows.Canary{Hosts: []string{"web5"}, Bake: time.Hour, Interval: 100 * time.Millisecond})
	o.Policy = Policy{OnFailure: workflows.OnFailureRollback}
	recap, err := Run(context.Background(), nil, o)
	var se *workflows.StepError
	if !errors.As(err, &se) || se.Host != "web5" || se.Step != "bake health" {
		t.Fatalf("want the bake's health check of web5 failed, found %v", err)
	}
	n := f.Node("web5")
	if n.Installed != before || n.Maintenance || f.IsDrained("web5") || !n.Running {
		t.Fatalf("web5 %+v drained=%v: want back on %s, in rotation", n, f.IsDrained("web5"), before)
	}
	if got := recap.Host("web5").Rollback; got != "rolled back from 1.4.2 to "+before {
		t.Fatalf("recap rollback %q", got)
	}
	if got := touched(f); len(got) != 0 {
		t.Fatalf("hosts on 1.4.2 after the rollback: %v", got)
	}
}
