package deploy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signetbus/signet/internal/stage"
	"github.com/signetbus/signet/internal/stage/stagetest"
	"github.com/signetbus/signet/workflows"
	"github.com/signetbus/signet/workflows/deploy"
)

// hosts is the fleet size of every test: three zones of two (web1 and web4
// share zone a), batches of two.
const hosts = 6

// deployUser names the lock holder of the deploys the tests run through
// the Go API.
const deployUser = "tester@stage"

// startStage brings up a fleet of six hosts with every backend real, or
// skips saying which is missing (CI installs them all). It is stopped at
// cleanup.
func startStage(t *testing.T) *stage.Stage {
	t.Helper()
	var missing []string
	backends := stage.Detect(false)
	for _, k := range slices.Sorted(maps.Keys(backends)) {
		if v := backends[k]; !strings.HasPrefix(v, "real") {
			missing = append(missing, k+" ("+v+")")
		}
	}
	if len(missing) > 0 {
		t.Skipf("real backends missing: %s", strings.Join(missing, "; "))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := stage.Start(ctx, stage.Options{Dir: t.TempDir(), Hosts: hosts, AppCommand: stagetest.AppCommand()})
	if err != nil {
		t.Fatalf("start the stage: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("stop the stage: %v", err)
		}
	})
	for k, v := range s.Backends {
		if !strings.HasPrefix(v, "real") {
			t.Fatalf("backend %s is %q, want real", k, v)
		}
	}
	return s
}

func operator(t *testing.T, s *stage.Stage) *stage.Operator {
	t.Helper()
	op, err := s.Operator(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(op.Close)
	return op
}

// testCtx bounds one test's deploys: generous, so that a hang fails the
// test instead of the whole package.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// deployOpts are the options of a deploy of the stage's app, its events
// written as JSON lines to out.
func deployOpts(s *stage.Stage, op *stage.Operator, version string, out io.Writer) deploy.Options {
	return deploy.Options{AppFile: s.AppFile, Version: version, Env: s.Env, Yes: true, Output: out, Format: "json",
		Caller: op.Caller, Store: op.Store, User: deployUser}
}

// plan returns the deploy's batches as `--plan` shows them.
func plan(t *testing.T, s *stage.Stage, op *stage.Operator, version string) [][]string {
	t.Helper()
	return planFile(t, s, op, s.AppFile, version)
}

// planFile returns the batches of a deploy with another app file.
func planFile(t *testing.T, s *stage.Stage, op *stage.Operator, appFile, version string) [][]string {
	t.Helper()
	var buf bytes.Buffer
	o := deployOpts(s, op, version, &buf)
	o.AppFile, o.Plan = appFile, true
	if _, err := deploy.Run(testCtx(t), nil, o); err != nil {
		t.Fatalf("plan: %v", err)
	}
	var pv workflows.PlanView
	if err := json.Unmarshal(buf.Bytes(), &pv); err != nil {
		t.Fatalf("plan: %v\n%s", err, buf.String())
	}
	var out [][]string
	for _, b := range pv.Batches {
		var ids []string
		for _, h := range b {
			ids = append(ids, h.Host)
		}
		out = append(out, ids)
	}
	return out
}

func flatten(batches [][]string) []string {
	var out []string
	for _, b := range batches {
		out = append(out, b...)
	}
	return out
}

func loadApp(t *testing.T, s *stage.Stage) *deploy.App {
	t.Helper()
	a, err := deploy.LoadApp(s.AppFile)
	if err != nil {
		t.Fatal(err)
	}
	if a, err = a.ForEnv(s.Env); err != nil {
		t.Fatal(err)
	}
	return a
}

// stepNames are the deploy's steps in order.
func stepNames(a *deploy.App) []string {
	var out []string
	for _, st := range a.Steps() {
		out = append(out, st.Name)
	}
	return out
}

// recorder is the Output of a JSON deploy: it decodes each event line and
// calls hook, synchronously, from the engine's goroutine: a hook that
// breaks something does it between the step_start event and the call.
type recorder struct {
	mu     sync.Mutex
	buf    []byte
	events []workflows.Event
	bad    []string
	hook   func(workflows.Event)
}

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	r.buf = append(r.buf, p...)
	var fresh []workflows.Event
	for {
		i := bytes.IndexByte(r.buf, '\n')
		if i < 0 {
			break
		}
		line := r.buf[:i]
		r.buf = r.buf[i+1:]
		var e workflows.Event
		if err := json.Unmarshal(line, &e); err != nil {
			r.bad = append(r.bad, string(line))
			continue
		}
		r.events = append(r.events, e)
		fresh = append(fresh, e)
	}
	hook := r.hook
	r.mu.Unlock()
	if hook != nil {
		for _, e := range fresh {
			hook(e)
		}
	}
	return len(p), nil
}

func (r *recorder) Events() []workflows.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// check fails the test on a line that was not a JSON event and returns the
// run_done event, which must come last.
func (r *recorder) done(t *testing.T) workflows.Event {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.bad) > 0 || len(r.buf) > 0 {
		t.Errorf("output lines that are not JSON events: %q (left over %q)", r.bad, r.buf)
	}
	if len(r.events) == 0 || r.events[len(r.events)-1].Type != workflows.EventRunDone {
		t.Fatalf("the output does not end with a run_done event: %d events", len(r.events))
	}
	return r.events[len(r.events)-1]
}

// stepDone finds host's step_done event for step.
func stepDone(events []workflows.Event, host, step string) (workflows.Event, bool) {
	for _, e := range events {
		if e.Type == workflows.EventStepDone && e.Host == host && e.Step == step {
			return e, true
		}
	}
	return workflows.Event{}, false
}

// auditRecord is one line of a host's audit log (the fields the tests use).
type auditRecord struct {
	Identity string         `json:"identity"`
	User     string         `json:"user"`
	Agent    string         `json:"agent"`
	Action   string         `json:"action"`
	Params   map[string]any `json:"params"`
	Decision string         `json:"decision"`
	Status   string         `json:"status"`
	Reason   string         `json:"reason"`
}

func auditPath(s *stage.Stage, host string) string {
	return filepath.Join(s.Lab.Host(host).Dir, "audit.jsonl")
}

// readAudit returns host's audit records from the skip-th on.
func readAudit(t *testing.T, s *stage.Stage, host string, skip int) []auditRecord {
	t.Helper()
	f, err := os.Open(auditPath(s, host))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []auditRecord
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for n := 0; sc.Scan(); n++ {
		if n < skip {
			continue
		}
		var r auditRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("%s audit line %d: %v", host, n+1, err)
		}
		out = append(out, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// auditMarks counts every host's audit records, to read only what comes
// after.
func auditMarks(t *testing.T, s *stage.Stage) map[string]int {
	t.Helper()
	m := map[string]int{}
	for _, h := range s.Hosts {
		m[h.Identity] = len(readAudit(t, s, h.Identity, 0))
	}
	return m
}

// concerns reports whether an audit record in host's log is about host
// itself: every package, service, maintenance and health action is
// targeted at the host (a fleet-wide package refresh excepted), while the
// haproxy actions are broadcast to every host with the agent and name the
// server they are about.
func concerns(r auditRecord, host string) bool {
	switch r.Agent {
	case "haproxy":
		return r.Params["server"] == host
	case "package":
		return r.Action != "refresh"
	case "service", "maintenance", "health":
		return true
	}
	return false
}

// auditSteps maps host's audit records about itself to deploy steps, in
// order ("update"), and observations to "observe:agent.action". Each entry
// is suffixed with the decision and status when they are not
// accepted/ok ("update!accepted/failed").
func auditSteps(a *deploy.App, host string, recs []auditRecord) []string {
	var out []string
	for _, r := range recs {
		if !concerns(r, host) || r.Decision == "started" { // the result record follows
			continue
		}
		name := "observe:" + r.Agent + "." + r.Action
		for _, st := range a.Steps() {
			if st.Agent == r.Agent && st.Action == r.Action {
				name = st.Name
			}
		}
		if r.Decision != "accepted" || r.Status != "ok" {
			name += "!" + r.Decision + "/" + r.Status
		}
		out = append(out, name)
	}
	return out
}

// withoutObserve drops the observations from auditSteps' list.
func withoutObserve(steps []string) []string {
	return slices.DeleteFunc(slices.Clone(steps), func(s string) bool { return strings.HasPrefix(s, "observe:") })
}

// hostState is what a host looks like from outside the deploy.
type hostState struct {
	// Installed is the version the package put in the host's root.
	Installed string
	// Serves is what GET /version answers, or "error: ...".
	Serves string
	// HAProxy is the server's status in HAProxy's show stat.
	HAProxy string
	// Silenced is whether Alertmanager holds an active silence for it.
	Silenced bool
}

func (h hostState) String() string {
	return fmt.Sprintf("installed=%s serves=%q haproxy=%s silenced=%v", h.Installed, h.Serves, h.HAProxy, h.Silenced)
}

// inRotation is HAProxy sending the server traffic: UP, or "UP 1/2" (a
// check failed but the server is still up).
func inRotation(status string) bool { return status == "UP" || strings.HasPrefix(status, "UP ") }

// fleet observes every host: installed package version, served version,
// HAProxy status and silence.
func fleet(t *testing.T, s *stage.Stage) map[string]hostState {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out := map[string]hostState{}
	stats, err := s.ShowStat(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sil, err := s.Silences(ctx)
	if err != nil {
		t.Fatal(err)
	}
	serving := s.Serving(ctx)
	for _, h := range s.Hosts {
		b, err := os.ReadFile(filepath.Join(h.Root, "opt", s.App, "VERSION"))
		if err != nil {
			t.Fatalf("%s: installed version: %v", h.Identity, err)
		}
		st := hostState{Installed: strings.TrimSpace(string(b)), Serves: serving[h.Identity]}
		for _, sv := range stats {
			if sv.Server == h.Identity {
				st.HAProxy = sv.Status
			}
		}
		for _, si := range sil {
			st.Silenced = st.Silenced || si.Host == h.Identity
		}
		out[h.Identity] = st
	}
	return out
}

// wantDeployed checks that every host runs version and is back in service:
// installed and served, UP in HAProxy, no silence; and that HAProxy's
// frontend reaches every host at that version.
func wantDeployed(t *testing.T, s *stage.Stage, version string) {
	t.Helper()
	for id, st := range fleet(t, s) {
		if st.Installed != version || st.Serves != version || st.HAProxy != "UP" || st.Silenced {
			t.Errorf("%s: %s; want %s installed and served, UP, no silence", id, st, version)
		}
	}
	sil, err := s.Silences(context.Background())
	if err != nil || len(sil) != 0 {
		t.Errorf("active silences: %+v %v, want none", sil, err)
	}
	seen, err := s.ThroughFrontend(context.Background(), 4*hosts)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range s.Hosts {
		if want := fmt.Sprintf("%s %s on %s", s.App, version, h.Identity); seen[want] == 0 {
			t.Errorf("haproxy frontend never answered %q: %v", want, seen)
		}
	}
}

// wantUntouched checks that host was not deployed to since marks: no
// audit record about it, still at from, served, UP and not silenced.
func wantUntouched(t *testing.T, s *stage.Stage, a *deploy.App, marks map[string]int, host, from string) {
	t.Helper()
	if got := auditSteps(a, host, readAudit(t, s, host, marks[host])); len(got) != 0 {
		t.Errorf("%s: audit log shows %v, want nothing about it (untouched)", host, got)
	}
	if st := fleet(t, s)[host]; st.Installed != from || st.Serves != from || !inRotation(st.HAProxy) || st.Silenced {
		t.Errorf("%s: %s; want untouched: %s installed and served, UP, no silence", host, st, from)
	}
}

// wantHeld checks that host is held as on_failure hold leaves a failed
// host: out of rotation in HAProxy, silenced, its app not serving.
func wantHeld(t *testing.T, s *stage.Stage, host, installed string) {
	t.Helper()
	st := fleet(t, s)[host]
	if st.Installed != installed || inRotation(st.HAProxy) || !st.Silenced {
		t.Errorf("%s: %s; want held: %s installed, out of rotation, silenced", host, st, installed)
	}
	t.Logf("%s held: %s", host, st)
}

// wantAuditMatchesEvents checks, for every host, that the deploy steps its
// audit log shows since marks are exactly the steps the run reported as
// run (not skipped) for it, in order: the engine's account and the hosts'
// agree on who was touched and how far. A step that failed with "no
// response" may or may not have reached the host (a lost reply), so it
// may or may not be in the log; nor may one that found no responders.
func wantAuditMatchesEvents(t *testing.T, s *stage.Stage, a *deploy.App, marks map[string]int, events []workflows.Event) {
	t.Helper()
	ran := map[string][]string{}
	for _, e := range events {
		if e.Type != workflows.EventStepDone || e.Rollback || e.Status == workflows.StepSkipped {
			continue
		}
		name := e.Step
		switch {
		case e.Status == workflows.StepFailed && (strings.Contains(e.Error, "no response") || strings.Contains(e.Error, "no responders")):
			name += "?"
		case e.Status == workflows.StepFailed:
			name += "!accepted/failed"
		}
		ran[e.Host] = append(ran[e.Host], name)
	}
	for _, h := range s.Hosts {
		got := withoutObserve(auditSteps(a, h.Identity, readAudit(t, s, h.Identity, marks[h.Identity])))
		if !matchSteps(got, ran[h.Identity]) {
			t.Errorf("%s: audit log shows steps %v, the run reported %v", h.Identity, got, ran[h.Identity])
		}
	}
}

// matchSteps compares audit steps with reported ones, where "step?" in
// want matches that step with any outcome, or nothing.
func matchSteps(got, want []string) bool {
	if len(want) == 0 {
		return len(got) == 0
	}
	if name, ok := strings.CutSuffix(want[0], "?"); ok {
		if len(got) > 0 && strings.SplitN(got[0], "!", 2)[0] == name && matchSteps(got[1:], want[1:]) {
			return true
		}
		return matchSteps(got, want[1:])
	}
	return len(got) > 0 && got[0] == want[0] && matchSteps(got[1:], want[1:])
}

// rotationWatch polls HAProxy's show stat and records, per sample, the
// servers out of rotation.
type rotationWatch struct {
	stop    chan struct{}
	done    chan struct{}
	samples [][]string
	errs    []error
}

func watchRotation(s *stage.Stage, every time.Duration) *rotationWatch {
	w := &rotationWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			stats, err := s.ShowStat(ctx)
			cancel()
			if err != nil {
				w.errs = append(w.errs, err)
			} else {
				var out []string
				for _, st := range stats {
					if !inRotation(st.Status) {
						out = append(out, st.Server)
					}
				}
				w.samples = append(w.samples, out)
			}
			select {
			case <-w.stop:
				return
			case <-t.C:
			}
		}
	}()
	return w
}

// Stop ends the watch and returns the samples.
func (w *rotationWatch) Stop() ([][]string, []error) {
	close(w.stop)
	<-w.done
	return w.samples, w.errs
}

// setServerState sets a server's admin state on HAProxy's socket by hand,
// as a person would ("drain", "ready").
func setServerState(t *testing.T, s *stage.Stage, server, state string) {
	t.Helper()
	c, err := net.Dial("unix", s.HAProxySocket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "set server %s/%s state %s\n", s.App, server, state)
	b, _ := io.ReadAll(c)
	if strings.TrimSpace(string(b)) != "" {
		t.Fatalf("haproxy set server %s state %s: %s", server, state, b)
	}
}
