package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/signetbus/signet/workflows"
	"github.com/signetbus/signet/workflows/fleettest"
)

const appYAML = `
version: 1
name: middleware
package: app
service: app
hosts: [role=app]
haproxy:
  backend: middleware
  lb_filter: [lb=prod]
health:
  url: http://127.0.0.1:8080/version
batch_size: "3"
on_failure: hold
envs:
  dev:
    on_failure: rollback
`

var fullSteps = []string{"maintenance.start", "haproxy.drain", "service.stop", "package.update", "package.check_version", "service.start", "health.http", "haproxy.enable", "maintenance.end"}

func newApp(t *testing.T) *App {
	t.Helper()
	a, err := ParseApp(strings.NewReader(appYAML))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func fleet9() *fleettest.Fleet {
	return fleettest.New([]string{"web1", "web2", "web3", "web4", "web5", "web6", "web7", "web8", "web9"}, []string{"a", "b", "c"})
}

func opts(t *testing.T, f *fleettest.Fleet, store workflows.Store, out *bytes.Buffer) Options {
	return Options{App: newApp(t), Version: "1.4.2", Env: "prod", Yes: true, Output: out, Format: "json", Caller: f, Store: store, User: "alice@bastion"}
}

// hostCalls filters the fleet log to one host's calls, dropping the
// observation calls (status) the deploy makes before touching a host.
func hostCalls(f *fleettest.Fleet, host string) []string {
	var out []string
	for _, c := range f.HostLog(host) {
		if !strings.HasSuffix(c, ".status") {
			out = append(out, c)
		}
	}
	return out
}

func events(t *testing.T, out *bytes.Buffer) []workflows.Event {
	t.Helper()
	var evs []workflows.Event
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var e workflows.Event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("output line %q is not a JSON event: %v", line, err)
		}
		evs = append(evs, e)
	}
	return evs
}

func TestDeployHappyPath(t *testing.T) {
	f := fleet9()
	var out bytes.Buffer
	store := workflows.NewMemStore()
	recap, err := Run(context.Background(), nil, opts(t, f, store, &out))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"web1", "web5", "web9"} {
		if got := hostCalls(f, h); !reflect.DeepEqual(got, fullSteps) {
			t.Errorf("%s calls = %v, want %v", h, got, fullSteps)
		}
		n := f.Node(h)
		if n.Installed != "1.4.2" || !n.Running || n.Maintenance || f.IsDrained(h) {
			t.Errorf("%s end state = %+v drained=%v, want 1.4.2 running, no maintenance, in rotation", h, n, f.IsDrained(h))
		}
	}
	// Every drain and enable reached both load balancers.
	for _, lb := range []string{"lb1", "lb2"} {
		n := 0
		for _, l := range f.Log() {
			if strings.HasPrefix(l, lb+" haproxy.drain@") {
				n++
			}
		}
		if n != 9 {
			t.Errorf("%s drained %d servers, want 9", lb, n)
		}
	}
	if recap.Status != workflows.StatusDone || len(recap.OutOfRotation) != 0 {
		t.Errorf("recap = %+v, want done with nobody out of rotation", recap)
	}
	// Recap counts: 9 steps ok, of which maintenance start, drain, stop,
	// update, start, enable and maintenance end changed the host.
	want := workflows.HostRecap{Host: "web4", OK: 9, Changed: 7, Status: workflows.HostDone}
	if got := *recap.Host("web4"); got != want {
		t.Errorf("recap web4 = %+v, want %+v", got, want)
	}
	evs := events(t, &out)
	// Batches never hold two hosts of a zone: web1, web4, web7 are zone a.
	var batches [][]string
	for _, e := range evs {
		if e.Type == workflows.EventBatchStart {
			batches = append(batches, e.Hosts)
		}
	}
	if want := [][]string{{"web1", "web2", "web3"}, {"web4", "web5", "web6"}, {"web7", "web8", "web9"}}; !reflect.DeepEqual(batches, want) {
		t.Errorf("batches = %v, want %v", batches, want)
	}
	st, err := store.Load(context.Background(), recap.Run)
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != workflows.StatusDone || st.Hosts["web9"].Status != workflows.HostDone || len(st.Hosts["web9"].Done) != 9 || st.Hosts["web9"].Vars["previous"] != "1.4.1" {
		t.Errorf("stored state = %+v web9 %+v, want done with 9 steps and previous 1.4.1", st, st.Hosts["web9"])
	}
}

// TestDeployJSONEvents pins the shape of the JSON lines Jenkins reads.
func TestDeployJSONEvents(t *testing.T) {
	f := fleettest.New([]string{"web1"}, []string{"a"})
	var out bytes.Buffer
	recap, err := Run(context.Background(), nil, opts(t, f, workflows.NewMemStore(), &out))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var types []string
	for _, e := range events(t, &out) {
		types = append(types, e.Type)
		if e.Run != recap.Run || e.Time.IsZero() {
			t.Errorf("event %+v lacks run id or time", e)
		}
	}
	want := []string{"run_start", "batch_start"}
	for range fullSteps {
		want = append(want, "step_start", "step_done")
	}
	want = append(want, "host_done", "batch_done", "run_done")
	if !reflect.DeepEqual(types, want) {
		t.Errorf("event types = %v, want %v", types, want)
	}
	var step map[string]any
	json.Unmarshal([]byte(lines[5]), &step)
	for _, k := range []string{"time", "run", "type", "batch", "host", "step", "call", "status", "results"} {
		if _, ok := step[k]; !ok {
			t.Errorf("step_done line %s has no %q", lines[5], k)
		}
	}
	if step["step"] != "drain" || step["call"] != "haproxy.drain" || step["status"] != "changed" {
		t.Errorf("step_done = %s, want drain haproxy.drain changed", lines[5])
	}
	var last map[string]any
	json.Unmarshal([]byte(lines[len(lines)-1]), &last)
	rc, _ := last["recap"].(map[string]any)
	hosts, _ := rc["hosts"].([]any)
	if last["status"] != "done" || len(hosts) != 1 {
		t.Errorf("run_done = %s, want status done and a recap of 1 host", lines[len(lines)-1])
	}
}

func TestDeployFirstFailureStops(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(f *fleettest.Fleet)
		wantErr string
	}{
		{"held package", func(f *fleettest.Fleet) { f.Nodes["web3"].Held = true },
			"web3: check_version: want 1.4.2, installed 1.4.1 (apt: held package)"},
		{"no response", func(f *fleettest.Fleet) { f.Silent["web3 service.stop"] = true },
			"web3: stop: no response within 1m10s"},
		{"health", func(f *fleettest.Fleet) { f.Nodes["web3"].Unhealthy = true },
			`web3: health: health: GET http://127.0.0.1:8080/version: want body containing "1.4.2", found "1.4.2"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := fleet9()
			tt.setup(f)
			var out bytes.Buffer
			recap, err := Run(context.Background(), nil, opts(t, f, workflows.NewMemStore(), &out))
			if err == nil || err.Error() != tt.wantErr {
				t.Fatalf("error = %v, want %q", err, tt.wantErr)
			}
			var se *workflows.StepError
			if !errors.As(err, &se) || se.Host != "web3" {
				t.Errorf("error is not a StepError of web3: %#v", err)
			}
			// Hosts of later batches are untouched: not even observed.
			for _, h := range []string{"web4", "web5", "web6", "web7", "web8", "web9"} {
				if got := f.HostLog(h); len(got) != 0 {
					t.Errorf("%s was touched after the failure: %v", h, got)
				}
			}
			if recap.Status != workflows.StatusFailed || recap.Host("web3").Failed != 1 || recap.Host("web3").Status != workflows.HostFailed {
				t.Errorf("recap = %+v web3 %+v", recap, recap.Host("web3"))
			}
			// Hold: web3 stays out of rotation and in maintenance.
			if !f.IsDrained("web3") || !f.Node("web3").Maintenance {
				t.Errorf("web3 drained=%v maintenance=%v, want both held", f.IsDrained("web3"), f.Node("web3").Maintenance)
			}
			checkOutOfRotation(t, f, recap)
		})
	}
}

// TestDeployFailureStopsBatchMates: under on_failure stop_now a failure
// stops the other hosts of the batch after their current step (the
// default lets them finish: TestDeployFailureBatchMateFinishes).
func TestDeployFailureStopsBatchMates(t *testing.T) {
	f := fleet9()
	f.Fail["web1 maintenance.start"] = "maintenance web1: alertmanager unreachable"
	web2in, web1done := make(chan struct{}), make(chan struct{})
	f.Hook = func(ctx context.Context, host string, c workflows.Call) {
		if c.Agent == "maintenance" && c.Action == "start" {
			switch host {
			case "web1":
				<-web2in // web1 fails while web2 is inside its first step
			case "web2":
				close(web2in)
				<-web1done
			}
		}
	}
	out := &signalWriter{match: `"type":"host_done","batch":1,"host":"web1"`, ch: web1done}
	o := opts(t, f, workflows.NewMemStore(), nil)
	o.Output = out
	o.Policy.OnFailure = workflows.OnFailureStopNow
	recap, err := Run(context.Background(), nil, o)
	if err == nil || err.Error() != "web1: maintenance_start: alertmanager unreachable" {
		t.Fatalf("error = %v", err)
	}
	if got := recap.Host("web2").Status; got != workflows.HostStopped {
		t.Errorf("web2 status = %s, want stopped", got)
	}
	if got := hostCalls(f, "web2"); !reflect.DeepEqual(got, []string{"maintenance.start"}) {
		t.Errorf("web2 calls = %v, want only the step it was running", got)
	}
}

func TestDeployRollback(t *testing.T) {
	f := fleet9()
	f.Nodes["web2"].Unhealthy = false
	f.Update(func(f *fleettest.Fleet) {
		f.Available = []string{"1.4.1", "1.4.2"}
	})
	// The new version fails its health check on web2 only.
	f.Hook = func(ctx context.Context, host string, c workflows.Call) {
		if host == "web2" && c.Agent == "health" {
			f.Update(func(f *fleettest.Fleet) { f.Nodes["web2"].Unhealthy = f.Nodes["web2"].Installed == "1.4.2" })
		}
	}
	o := opts(t, f, workflows.NewMemStore(), &bytes.Buffer{})
	o.Env = "dev"
	for _, n := range f.Nodes {
		if n.Facts["env"] == "prod" {
			n.Facts["env"] = "dev"
		}
	}
	recap, err := Run(context.Background(), nil, o)
	want := `web2: health: health: GET http://127.0.0.1:8080/version: want body containing "1.4.2", found "1.4.2"; rolled back to 1.4.1`
	if err == nil || err.Error() != want {
		t.Fatalf("error = %v, want %q", err, want)
	}
	n := f.Node("web2")
	if n.Installed != "1.4.1" || !n.Running || n.Maintenance || f.IsDrained("web2") {
		t.Errorf("web2 after rollback = %+v drained=%v, want 1.4.1 running, in rotation, no maintenance", n, f.IsDrained("web2"))
	}
	checkOutOfRotation(t, f, recap)
	if recap.Host("web2").Status != workflows.HostRolledBack {
		t.Errorf("recap web2 = %+v, out of rotation %v", recap.Host("web2"), recap.OutOfRotation)
	}
	// The rollback is the deploy's own steps at the previous version: the
	// host is drained again and enabled only after its health check.
	wantCalls := append(fullSteps[:7:7], fullSteps...)
	if got := hostCalls(f, "web2"); !reflect.DeepEqual(got, wantCalls) {
		t.Errorf("web2 calls = %v, want %v", got, wantCalls)
	}
}

// TestDeployResumeObservesState: after a held-package failure the operator
// fixes web3 by hand (installs 1.4.2) but leaves it drained; the resume
// must enable it rather than skip it, then finish the other batches.
func TestDeployResumeObservesState(t *testing.T) {
	f := fleet9()
	f.Nodes["web3"].Held = true
	store := workflows.NewMemStore()
	first := opts(t, f, store, &bytes.Buffer{})
	first.App.BatchSize = "1" // web1 and web2 are surely done when web3 fails
	recap, err := Run(context.Background(), nil, first)
	if err == nil {
		t.Fatal("first run did not fail")
	}
	f.Update(func(f *fleettest.Fleet) {
		n := f.Nodes["web3"]
		n.Held, n.Installed, n.Previous = false, "1.4.2", "1.4.1"
		n.Running = true
	})
	before := len(f.HostLog("web1"))
	var out bytes.Buffer
	o := opts(t, f, store, &out)
	o.App, o.Version, o.Env = newApp(t), "", ""
	recap2, err := Resume(context.Background(), nil, recap.Run, o)
	if err != nil {
		t.Fatal(err)
	}
	if got := hostCalls(f, "web3"); !reflect.DeepEqual(got[len(got)-5:], []string{"package.check_version", "service.start", "health.http", "haproxy.enable", "maintenance.end"}) {
		t.Errorf("web3 calls on resume end with %v, want check_version, start, health, enable, maintenance end", got)
	}
	if f.IsDrained("web3") || f.Node("web3").Maintenance {
		t.Error("web3 still out of rotation after resume")
	}
	// web1 was done and observed in rotation: verified, never drained again.
	var drains int
	for _, c := range f.HostLog("web1")[before:] {
		if c == "haproxy.drain" {
			drains++
		}
	}
	if drains != 0 {
		t.Errorf("web1 drained again on resume")
	}
	for _, h := range []string{"web4", "web9"} {
		if f.Node(h).Installed != "1.4.2" {
			t.Errorf("%s not deployed by the resume", h)
		}
	}
	if recap2.Status != workflows.StatusDone || recap2.Run != recap.Run {
		t.Errorf("resume recap = %+v, want done under run %s", recap2, recap.Run)
	}
	if r := recap2.Host("web3"); r.Skipped != 4 || r.OK != 5 {
		t.Errorf("web3 recap = %+v, want 4 skipped (maintenance start, drain, stop, update), 5 ok", r)
	}
}

func TestDeployLocked(t *testing.T) {
	f := fleet9()
	store := workflows.NewMemStore()
	unlock, err := store.Lock(context.Background(), "middleware/prod", workflows.Lease{Kind: "deploy", Holder: "bob@laptop", Run: "7f3a"})
	if err != nil {
		t.Fatal(err)
	}
	defer unlock.Unlock(context.Background())
	_, err = Run(context.Background(), nil, opts(t, f, store, &bytes.Buffer{}))
	var le *workflows.LockError
	if !errors.As(err, &le) || le.Holder.Holder != "bob@laptop" || !strings.HasPrefix(err.Error(), "deploy of middleware/prod is locked by bob@laptop run 7f3a (since ") {
		t.Fatalf("error = %v, want the lock held by bob@laptop run 7f3a", err)
	}
	for _, l := range f.Log() {
		t.Errorf("a locked deploy made a call: %s", l)
	}
}

func TestDeploySoftStop(t *testing.T) {
	f := fleet9()
	soft := make(chan struct{})
	f.Hook = func(ctx context.Context, host string, c workflows.Call) {
		if host == "web2" && c.Agent == "package" && c.Action == "update" {
			select {
			case <-soft:
			default:
				close(soft)
			}
		}
	}
	store := workflows.NewMemStore()
	recap, err := Run(context.Background(), soft, opts(t, f, store, &bytes.Buffer{}))
	if !errors.Is(err, workflows.ErrStopped) {
		t.Fatalf("error = %v, want ErrStopped", err)
	}
	for _, h := range []string{"web1", "web2", "web3"} {
		if f.Node(h).Installed != "1.4.2" || f.IsDrained(h) || f.Node(h).Maintenance {
			t.Errorf("%s not finished by the soft stop", h)
		}
	}
	for _, h := range []string{"web4", "web7"} {
		if len(f.HostLog(h)) != 0 {
			t.Errorf("%s touched after the soft stop", h)
		}
	}
	if recap.Status != workflows.StatusStopped || len(recap.OutOfRotation) != 0 {
		t.Errorf("recap = %+v", recap)
	}
	// The stopped run resumes to completion.
	o := opts(t, f, store, &bytes.Buffer{})
	f.Hook = nil
	if _, err := Resume(context.Background(), nil, recap.Run, o); err != nil {
		t.Fatal(err)
	}
	if f.Node("web9").Installed != "1.4.2" {
		t.Error("resume after soft stop did not finish")
	}
}

func TestDeployHardCancel(t *testing.T) {
	f := fleet9()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// All of batch 1 reaches stop; web2's stop cancels the run while web1
	// and web3 wait inside theirs.
	var barrier sync.WaitGroup
	barrier.Add(3)
	f.Hook = func(hctx context.Context, host string, c workflows.Call) {
		if c.Agent == "service" && c.Action == "stop" {
			barrier.Done()
			barrier.Wait()
			if host == "web2" {
				cancel()
			}
			<-hctx.Done()
		}
	}
	recap, err := Run(ctx, nil, opts(t, f, workflows.NewMemStore(), &bytes.Buffer{}))
	var ie *workflows.InterruptedError
	if !errors.As(err, &ie) || !errors.Is(err, context.Canceled) {
		t.Fatalf("error = %v, want an InterruptedError wrapping context.Canceled", err)
	}
	// Every host of batch 1 had been drained and put in maintenance when
	// web2's stop cancelled the run; the report names exactly those.
	want := []workflows.HostMarks{
		{Host: "web1", Marks: []string{"maintenance", "drained"}},
		{Host: "web2", Marks: []string{"maintenance", "drained"}},
		{Host: "web3", Marks: []string{"maintenance", "drained"}},
	}
	for _, m := range recap.OutOfRotation {
		if !f.IsDrained(m.Host) && !f.Node(m.Host).Maintenance {
			t.Errorf("%s reported out of rotation but the fleet has it in rotation", m.Host)
		}
	}
	for _, h := range []string{"web1", "web2", "web3"} {
		if !f.IsDrained(h) {
			continue
		}
		found := false
		for _, m := range recap.OutOfRotation {
			found = found || m.Host == h
		}
		if !found {
			t.Errorf("%s is drained but not reported", h)
		}
	}
	if !reflect.DeepEqual(recap.OutOfRotation, want) {
		t.Errorf("out of rotation = %v, want %v", recap.OutOfRotation, want)
	}
	if !strings.HasPrefix(err.Error(), "run interrupted: left out of rotation: web1 (maintenance, drained), web2 (maintenance, drained)") {
		t.Errorf("error = %q", err)
	}
	if recap.Status != workflows.StatusInterrupted || len(f.HostLog("web4")) != 0 {
		t.Errorf("recap status %s, web4 calls %v", recap.Status, f.HostLog("web4"))
	}
}

func TestDeployPlan(t *testing.T) {
	f := fleet9()
	var out bytes.Buffer
	o := opts(t, f, workflows.NewMemStore(), &out)
	o.Plan, o.Yes, o.Format = true, false, "text"
	if _, err := Run(context.Background(), nil, o); err != nil {
		t.Fatal(err)
	}
	for _, l := range f.Log() {
		t.Errorf("plan made a call: %s", l)
	}
	s := out.String()
	for _, want := range []string{
		"plan: deploy middleware 1.4.2 to prod: 9 hosts in 3 batches (nothing is run)",
		"batch 1/3: web1 (zone a), web2 (zone b), web3 (zone c)",
		"    2. drain              haproxy.drain on lb=prod backend=middleware server=web1 timeout=1m0s wait=true",
		"    4. update             package.update package=app version=1.4.2",
		"    9. maintenance_end    maintenance.end",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("plan lacks %q:\n%s", want, s)
		}
	}
	if n := strings.Count(s, "package.check_version"); n != 9 {
		t.Errorf("plan shows check_version %d times, want once per host (9)", n)
	}
}

func TestDeployRefusesWithoutYes(t *testing.T) {
	f := fleet9()
	o := opts(t, f, workflows.NewMemStore(), &bytes.Buffer{})
	o.Yes = false
	if _, err := Run(context.Background(), nil, o); err == nil || !strings.Contains(err.Error(), "confirm with --yes") {
		t.Fatalf("error = %v", err)
	}
	o.Yes, o.Version = true, "1.4.2;reboot"
	if _, err := Run(context.Background(), nil, o); err == nil || !strings.Contains(err.Error(), `version: want a package version`) {
		t.Fatalf("error = %v", err)
	}
	if len(f.Log()) != 0 {
		t.Errorf("calls made: %v", f.Log())
	}
}

func TestDeployTextOutput(t *testing.T) {
	f := fleettest.New([]string{"web1"}, []string{"a"})
	f.Nodes["web1"].Held = true
	var out bytes.Buffer
	o := opts(t, f, workflows.NewMemStore(), &out)
	o.Format = "text"
	Run(context.Background(), nil, o)
	s := out.String()
	for _, want := range []string{"batch 1/1: web1", "  web1       drain", "error: web1: check_version: want 1.4.2, installed 1.4.1 (apt: held package)", "RECAP", "web1  ok=4   changed=3   failed=1   skipped=0   failed", "left out of rotation:\n  web1 (maintenance, drained)"} {
		if !strings.Contains(s, want) {
			t.Errorf("text output lacks %q:\n%s", want, s)
		}
	}
}

// signalWriter closes ch once a written line contains match.
type signalWriter struct {
	mu    sync.Mutex
	match string
	ch    chan struct{}
	done  bool
}

func (w *signalWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done && strings.Contains(string(p), w.match) {
		w.done = true
		close(w.ch)
	}
	return len(p), nil
}

// checkOutOfRotation asserts the recap reports exactly the hosts the fleet
// has drained or in maintenance, with exactly those marks.
func checkOutOfRotation(t *testing.T, f *fleettest.Fleet, recap *workflows.Recap) {
	t.Helper()
	reported := map[string][]string{}
	for _, m := range recap.OutOfRotation {
		reported[m.Host] = m.Marks
	}
	for _, h := range []string{"web1", "web2", "web3", "web4", "web5", "web6", "web7", "web8", "web9"} {
		var want []string
		if f.Node(h).Maintenance {
			want = append(want, "maintenance")
		}
		if f.IsDrained(h) {
			want = append(want, "drained")
		}
		got := append([]string(nil), reported[h]...)
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s: reported marks %v, fleet has %v", h, got, want)
		}
	}
}

func TestServerDrained(t *testing.T) {
	cases := []struct {
		m    map[string]any
		want bool
	}{
		{map[string]any{"status": "UP", "admin_state": "ready"}, false},
		{map[string]any{"status": "DOWN", "admin_state": "drain"}, true}, // drained and the app is down
		{map[string]any{"status": "DOWN", "admin_state": "maint"}, true},
		{map[string]any{"status": "DOWN", "admin_state": "ready"}, false},
		{map[string]any{"status": "DRAIN"}, true}, // no admin state: the status text decides
		{map[string]any{"status": "MAINT (via app/web1)"}, true},
		{map[string]any{"status": "UP"}, false},
	}
	for _, c := range cases {
		if got := serverDrained(c.m); got != c.want {
			t.Errorf("serverDrained(%v) = %v, want %v", c.m, got, c.want)
		}
	}
}
