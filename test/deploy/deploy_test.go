package deploy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signetbus/signet/internal/stage"
	"github.com/signetbus/signet/workflows"
	"github.com/signetbus/signet/workflows/deploy"
)

// TestRollingDeploy rolls demo 1.0 -> 1.1 over six hosts while a goroutine
// samples HAProxy's show stat every 25ms. It proves that no sample had
// more servers out of rotation than the batch size, two of one zone, or
// servers of two batches; that every host was seen out of rotation (the
// watch saw the drains); and afterwards that every host serves 1.1 and is
// UP, no silence is left, and every step of every host is in that host's
// audit log as accepted and ok, in order.
func TestRollingDeploy(t *testing.T) {
	s := startStage(t)
	op := operator(t, s)
	a := loadApp(t, s)
	batches := plan(t, s, op, "1.1")
	size, err := workflows.ParseBatchSize(a.BatchSize, hosts)
	if err != nil || size != 2 || len(batches) != 3 {
		t.Fatalf("batch size %d (%v), batches %v: want 3 batches of 2", size, err, batches)
	}
	batchOf := map[string]int{}
	for i, b := range batches {
		for _, h := range b {
			batchOf[h] = i
		}
	}
	marks := auditMarks(t, s)

	w := watchRotation(s, 25*time.Millisecond)
	rec := &recorder{}
	recap, err := deploy.Run(testCtx(t), nil, deployOpts(s, op, "1.1", rec))
	samples, errs := w.Stop()
	if err != nil {
		t.Fatalf("deploy: %v", err)
	}
	if recap.Status != workflows.StatusDone || len(recap.OutOfRotation) != 0 {
		t.Errorf("recap: status %s, out of rotation %v; want done and none", recap.Status, recap.OutOfRotation)
	}
	for _, h := range recap.Hosts {
		if h.Status != workflows.HostDone || h.OK != len(a.Steps()) || h.Failed != 0 || h.Skipped != 0 {
			t.Errorf("recap %s: %+v, want done with %d steps ok", h.Host, h, len(a.Steps()))
		}
	}
	if last := rec.done(t); last.Status != workflows.StatusDone || last.Recap == nil {
		t.Errorf("run_done: %+v", last)
	}

	// HAProxy, as sampled during the run.
	if len(errs) > len(samples)/10 {
		t.Errorf("show stat failed %d times in %d samples: %v", len(errs), len(samples), errs[0])
	}
	if len(samples) < 20 {
		t.Fatalf("only %d show stat samples during the deploy", len(samples))
	}
	seen := map[string]bool{}
	bad := 0
	for i, out := range samples {
		zones := map[string]string{}
		var why []string
		if len(out) > size {
			why = append(why, "more than the batch size")
		}
		for _, h := range out {
			seen[h] = true
			z := s.Host(h).Zone
			if other, ok := zones[z]; ok {
				why = append(why, "two hosts of zone "+z+": "+other+" and "+h)
			}
			zones[z] = h
			if batchOf[h] != batchOf[out[0]] {
				why = append(why, "hosts of two batches")
			}
		}
		if len(why) > 0 && bad < 5 {
			bad++
			t.Errorf("show stat sample %d: out of rotation %v: %s", i, out, strings.Join(why, "; "))
		}
	}
	for _, h := range s.Hosts {
		if !seen[h.Identity] {
			t.Errorf("%s was never seen out of rotation in %d samples", h.Identity, len(samples))
		}
	}
	t.Logf("%d show stat samples, %d errors", len(samples), len(errs))

	wantDeployed(t, s, "1.1")

	// Every step of every host, accepted and ok, in order, in its own
	// audit log; and exactly what the run reported.
	for _, h := range s.Hosts {
		got := withoutObserve(auditSteps(a, h.Identity, readAudit(t, s, h.Identity, marks[h.Identity])))
		if !slices.Equal(got, stepNames(a)) {
			t.Errorf("%s: audit log shows %v, want every step accepted and ok: %v", h.Identity, got, stepNames(a))
		}
	}
	wantAuditMatchesEvents(t, s, a, marks, rec.Events())
}

// TestBrokenPackage breaks the 1.1 package on the third host in deploy
// order (its preinst exits 1 through dpkg). The run stops at that host's
// update with dpkg's error; the first batch is at 1.1, later batches are
// untouched at 1.0 and UP, the failed host is held out of rotation and
// silenced at 1.0. After FixPackage, Resume finishes: every host at 1.1,
// UP, no silence; the hosts already done are only checked.
func TestBrokenPackage(t *testing.T) {
	s := startStage(t)
	op := operator(t, s)
	a := loadApp(t, s)
	batches := plan(t, s, op, "1.1")
	victim, partner := batches[1][0], batches[1][1]
	if err := s.BreakPackage(victim, "1.1"); err != nil {
		t.Fatal(err)
	}
	marks := auditMarks(t, s)
	rec := &recorder{}
	recap, err := deploy.Run(testCtx(t), nil, deployOpts(s, op, "1.1", rec))
	var se *workflows.StepError
	if !errors.As(err, &se) || se.Host != victim || se.Step != deploy.StepUpdate {
		t.Fatalf("deploy: got %v, want a step error at %s update", err, victim)
	}
	for _, want := range []string{victim + ": update: ", "update demo 1.1", "pre-installation script"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if last := rec.done(t); last.Status != workflows.StatusFailed || last.Error != err.Error() {
		t.Errorf("run_done: status %s error %q, want failed with %q", last.Status, last.Error, err)
	}
	wantStopped(t, s, a, recap, marks, batches, "1.0")
	wantHeld(t, s, victim, "1.0")
	if !slices.ContainsFunc(recap.OutOfRotation, func(m workflows.HostMarks) bool {
		return m.Host == victim && slices.Contains(m.Marks, deploy.MarkDrained) && slices.Contains(m.Marks, deploy.MarkMaintenance)
	}) {
		t.Errorf("recap out of rotation %v: want %s (maintenance, drained)", recap.OutOfRotation, victim)
	}
	wantPartner(t, s, recap, partner)
	wantAuditMatchesEvents(t, s, a, marks, rec.Events())

	if err := s.FixPackage(victim, "1.1"); err != nil {
		t.Fatal(err)
	}
	marks2 := auditMarks(t, s)
	rec2 := &recorder{}
	recap2, err := deploy.Resume(testCtx(t), nil, recap.Run, deployOpts(s, op, "", rec2))
	if err != nil {
		t.Fatalf("resume: %v", err)
	}
	if recap2.Status != workflows.StatusDone {
		t.Errorf("resume recap: %+v", recap2)
	}
	wantDeployed(t, s, "1.1")
	ev := rec2.Events()
	for _, h := range batches[0] {
		if e, _ := stepDone(ev, h, deploy.StepUpdate); e.Status != workflows.StepSkipped || !strings.Contains(e.Summary, "observed 1.1 installed, in rotation") {
			t.Errorf("resume: %s update: %s %q, want skipped as observed 1.1 in rotation", h, e.Status, e.Summary)
		}
	}
	for _, h := range append([]string{victim}, batches[2]...) {
		if e, _ := stepDone(ev, h, deploy.StepUpdate); e.Status != workflows.StepChanged {
			t.Errorf("resume: %s update: %s %q, want changed", h, e.Status, e.Error)
		}
	}
	wantAuditMatchesEvents(t, s, a, marks2, ev)
	wantEveryStepAudited(t, s, a, marks)
}

// TestBrokenHealth makes the third host's app answer 500 from the moment
// its service is started at 1.1. The run stops at its health check with
// the status found; it is held at 1.1 out of rotation; later batches are
// untouched. After FixHealth, `signet deploy --resume RUN` finishes:
// the held host is not reinstalled (observed at 1.1) but checked, started,
// checked for health and enabled.
func TestBrokenHealth(t *testing.T) {
	s := startStage(t)
	op := operator(t, s)
	a := loadApp(t, s)
	batches := plan(t, s, op, "1.1")
	victim, partner := batches[1][0], batches[1][1]
	marks := auditMarks(t, s)
	var hookErr error
	rec := &recorder{hook: func(e workflows.Event) {
		if e.Type == workflows.EventStepStart && e.Host == victim && e.Step == deploy.StepStart {
			hookErr = s.BreakHealth(victim)
		}
	}}
	recap, err := deploy.Run(testCtx(t), nil, deployOpts(s, op, "1.1", rec))
	if hookErr != nil {
		t.Fatal(hookErr)
	}
	var se *workflows.StepError
	if !errors.As(err, &se) || se.Host != victim || se.Step != deploy.StepHealth {
		t.Fatalf("deploy: got %v, want a step error at %s health", err, victim)
	}
	if !strings.Contains(err.Error(), victim+": health: ") || !strings.Contains(err.Error(), "500") {
		t.Errorf("error %q: want the health check's status 500", err)
	}
	rec.done(t)
	wantStopped(t, s, a, recap, marks, batches, "1.0")
	wantHeld(t, s, victim, "1.1")
	wantPartner(t, s, recap, partner)
	wantAuditMatchesEvents(t, s, a, marks, rec.Events())

	if err := s.FixHealth(victim); err != nil {
		t.Fatal(err)
	}
	marks2 := auditMarks(t, s)
	// The documented form: the run knows its app and environment.
	code, out, errOut := signet(t, s, nil, "deploy", "--resume", recap.Run, "--yes", "--output", "json")
	if code != 0 {
		t.Fatalf("signet deploy --resume: exit %d\n%s", code, errOut)
	}
	rec2 := &recorder{}
	rec2.Write([]byte(out))
	if last := rec2.done(t); last.Status != workflows.StatusDone || last.Run != recap.Run {
		t.Errorf("resume run_done: %+v", last)
	}
	ev := rec2.Events()
	if e, _ := stepDone(ev, victim, deploy.StepUpdate); e.Status != workflows.StepSkipped || !strings.Contains(e.Summary, "observed 1.1 installed") {
		t.Errorf("resume: %s update %s %q, want skipped: observed 1.1 installed", victim, e.Status, e.Summary)
	}
	for _, step := range []string{deploy.StepCheckVersion, deploy.StepStart, deploy.StepHealth, deploy.StepEnable, deploy.StepMaintenanceEnd} {
		if e, _ := stepDone(ev, victim, step); e.Status != workflows.StepOK && e.Status != workflows.StepChanged {
			t.Errorf("resume: %s %s %s, want run", victim, step, e.Status)
		}
	}
	wantDeployed(t, s, "1.1")
	wantAuditMatchesEvents(t, s, a, marks2, ev)
	wantEveryStepAudited(t, s, a, marks)
	if n := countSteps(t, a, s, victim, marks, deploy.StepUpdate); n != 1 {
		t.Errorf("%s was updated %d times, want once", victim, n)
	}
}

// TestKilledResponder kills the third host's responder (closed connection,
// no goodbye) as its start step begins. The run stops with "no response"
// naming the host and step. The host is held at 1.1, stopped; later hosts
// are untouched. Before resuming, a host the record says is done is
// drained by hand in HAProxy: the resume, which trusts observation over
// the record, enables it again, re-checks the killed host's version
// although the record has check_version done, and does not reinstall it.
//
// It uses batches of one and a 3s stop_timeout to keep the wait short: the
// stage gives every host the haproxy agent, and a drain or enable is
// broadcast to every registered haproxy host, so with batches of two the
// partner's enable would also wait out its 40s timeout for the dead host
// (still in the registry); it then succeeds on the others
// (TestDeadLoadBalancer).
func TestKilledResponder(t *testing.T) {
	s := startStage(t)
	op := operator(t, s)
	appFile := appVariant(t, s, map[string]string{`batch_size: "2"`: `batch_size: "1"`, "stop_timeout: 20s": "stop_timeout: 3s"})
	a, err := deploy.LoadApp(appFile)
	if err != nil {
		t.Fatal(err)
	}
	opts := func(out *recorder) deploy.Options {
		o := deployOpts(s, op, "1.1", out)
		o.AppFile = appFile
		return o
	}
	pb := planFile(t, s, op, appFile, "1.1")
	order := flatten(pb)
	if len(pb) != hosts {
		t.Fatalf("plan with batch size 1: %v", pb)
	}
	victim := order[2]
	marks := auditMarks(t, s)
	rec := &recorder{hook: func(e workflows.Event) {
		if e.Type == workflows.EventStepStart && e.Host == victim && e.Step == deploy.StepStart {
			s.Lab.KillHost(victim)
		}
	}}
	recap, err := deploy.Run(testCtx(t), nil, opts(rec))
	var se *workflows.StepError
	if !errors.As(err, &se) || se.Host != victim || se.Step != deploy.StepStart || !strings.Contains(se.Detail, "no respon") { // "no response" or "no responders", as the kill races the publish
		t.Fatalf("deploy: got %v, want %s: start: no response", err, victim)
	}
	t.Logf("deploy error: %v", err)
	for _, h := range order[:2] {
		if recap.Host(h).Status != workflows.HostDone {
			t.Errorf("recap %s: %s, want done", h, recap.Host(h).Status)
		}
	}
	for _, h := range order[3:] {
		if recap.Host(h).Status != workflows.HostPending {
			t.Errorf("recap %s: %s, want pending", h, recap.Host(h).Status)
		}
		wantUntouched(t, s, a, marks, h, "1.0")
	}
	wantHeld(t, s, victim, "1.1")
	if st := fleet(t, s)[victim]; !strings.HasPrefix(st.Serves, "error") {
		t.Errorf("%s serves %q, want its app stopped (killed before start)", victim, st.Serves)
	}
	wantAuditMatchesEvents(t, s, a, marks, rec.Events())
	st, err := op.Store.Load(testCtx(t), recap.Run)
	if err != nil {
		t.Fatal(err)
	}
	if hs := st.Hosts[victim]; hs.Step != deploy.StepStart || !slices.Contains(hs.Done, deploy.StepCheckVersion) {
		t.Errorf("recorded %s: step %q done %v, want at start with check_version done", victim, hs.Step, hs.Done)
	}

	// A person pulls a host the record says is done out of rotation.
	setServerState(t, s, order[0], "drain")
	if err := s.Lab.StartHost(victim); err != nil {
		t.Fatal(err)
	}
	waitAnswers(t, op, victim)
	marks2 := auditMarks(t, s)
	rec2 := &recorder{}
	recap2, err := deploy.Resume(testCtx(t), nil, recap.Run, opts(rec2))
	if err != nil {
		t.Fatalf("resume: %v", err)
	}
	if recap2.Status != workflows.StatusDone {
		t.Errorf("resume recap: %+v", recap2)
	}
	ev := rec2.Events()
	want := map[string]map[string]string{
		order[0]: {deploy.StepUpdate: workflows.StepSkipped, deploy.StepEnable: "ran"},
		order[1]: {deploy.StepUpdate: workflows.StepSkipped, deploy.StepEnable: workflows.StepSkipped, deploy.StepCheckVersion: "ran"},
		victim:   {deploy.StepUpdate: workflows.StepSkipped, deploy.StepCheckVersion: "ran", deploy.StepStart: "ran", deploy.StepEnable: "ran"},
		order[3]: {deploy.StepUpdate: "ran"},
	}
	for h, steps := range want {
		for step, status := range steps {
			e, _ := stepDone(ev, h, step)
			got := e.Status
			if got == workflows.StepOK || got == workflows.StepChanged {
				got = "ran"
			}
			if got != status {
				t.Errorf("resume: %s %s: %s %q, want %s", h, step, e.Status, e.Summary+e.Error, status)
			}
		}
	}
	wantDeployed(t, s, "1.1")
	wantAuditMatchesEvents(t, s, a, marks2, ev)
	if n := countSteps(t, a, s, victim, marks, deploy.StepUpdate); n != 1 {
		t.Errorf("%s was updated %d times, want once", victim, n)
	}
	if n := countSteps(t, a, s, victim, marks, deploy.StepCheckVersion); n != 2 {
		t.Errorf("%s had check_version %d times, want twice (once per run)", victim, n)
	}
}

// TestBrokerRestart restarts the broker (same port, same JetStream store)
// as the first host of the second batch begins its first step. Inside that
// moment, it checks on the new broker that the run's lock is still held by
// the deploy's user and its state is still there. Whatever the run then
// reports (riding through on reconnects, or a step error naming a host and
// step) is logged and checked; a resume, when needed, finishes the job.
func TestBrokerRestart(t *testing.T) {
	s := startStage(t)
	op := operator(t, s)
	batches := plan(t, s, op, "1.1")
	victim := batches[1][0]
	var (
		mu       sync.Mutex
		hookErrs []string
		restarts int
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		hookErrs = append(hookErrs, fmt.Sprintf(format, args...))
	}
	rec := &recorder{}
	rec.hook = func(e workflows.Event) {
		if e.Type != workflows.EventStepStart || e.Host != victim || e.Step != deploy.StepMaintenanceStart {
			return
		}
		mu.Lock()
		restarts++
		mu.Unlock()
		if err := s.Lab.RestartBroker(); err != nil {
			fail("restart broker: %v", err)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		op2, err := s.Operator(ctx)
		if err != nil {
			fail("operator on the new broker: %v", err)
			return
		}
		defer op2.Close()
		_, err = op2.Store.Lock(ctx, s.App+"/"+s.Env, workflows.Lease{Kind: "deploy", Holder: "intruder", Run: "x", Since: time.Now()})
		var le *workflows.LockError
		if !errors.As(err, &le) || le.Holder.Holder != deployUser || le.Holder.Run != e.Run {
			fail("lock after the restart: want it held by %s run %s, got %v", deployUser, e.Run, err)
		}
		st, err := op2.Store.Load(ctx, e.Run)
		switch {
		case err != nil:
			fail("run state after the restart: %v", err)
		case st.Status != workflows.StatusRunning:
			fail("run state after the restart: status %s, want running", st.Status)
		case len(st.Batches) != len(batches):
			fail("run state after the restart: batches %v, want %v", st.Batches, batches)
		}
	}
	recap, err := deploy.Run(testCtx(t), nil, deployOpts(s, op, "1.1", rec))
	if restarts != 1 || len(hookErrs) > 0 {
		t.Fatalf("restarts %d, errors in the restart hook: %v", restarts, hookErrs)
	}
	rec.done(t)
	var se *workflows.StepError
	switch {
	case err == nil:
		t.Logf("the run rode through the broker restart: %s", recap.Status)
		if recap.Status != workflows.StatusDone {
			t.Errorf("recap status %s, want done", recap.Status)
		}
	case errors.As(err, &se):
		t.Logf("the run stopped at the broker restart: %v", err)
		if s.Host(se.Host) == nil || se.Step == "" {
			t.Errorf("step error %+v: want a host and a step", se)
		}
		recap2, err := deploy.Resume(testCtx(t), nil, recap.Run, deployOpts(s, op, "", &recorder{}))
		if err != nil {
			t.Fatalf("resume after the broker restart: %v", err)
		}
		if recap2.Status != workflows.StatusDone {
			t.Errorf("resume recap status %s, want done", recap2.Status)
		}
	default:
		t.Fatalf("deploy across a broker restart: %v, want success or a step error naming host and step", err)
	}
	wantDeployed(t, s, "1.1")
	st, err := op.Store.Load(testCtx(t), recap.Run)
	if err != nil || st.Status != workflows.StatusDone {
		t.Errorf("run state after it all: %v %v, want done", st, err)
	}
	unlock, err := op.Store.Lock(testCtx(t), s.App+"/"+s.Env, workflows.Lease{Kind: "deploy", Holder: "next", Run: "y", Since: time.Now()})
	if err != nil {
		t.Errorf("lock after the run: %v, want it released", err)
	} else {
		unlock.Unlock(testCtx(t))
	}
}

// wantStopped checks a run that failed in the second batch: the first
// batch done at 1.1 and in service, the later batches untouched.
func wantStopped(t *testing.T, s *stage.Stage, a *deploy.App, recap *workflows.Recap, marks map[string]int, batches [][]string, from string) {
	t.Helper()
	if recap.Status != workflows.StatusFailed {
		t.Errorf("recap status %s, want failed", recap.Status)
	}
	fl := fleet(t, s)
	for _, h := range batches[0] {
		if recap.Host(h).Status != workflows.HostDone {
			t.Errorf("recap %s: %s, want done", h, recap.Host(h).Status)
		}
		if st := fl[h]; st.Installed != "1.1" || st.Serves != "1.1" || st.HAProxy != "UP" || st.Silenced {
			t.Errorf("%s (first batch): %s, want 1.1 in service", h, st)
		}
	}
	if got := recap.Host(batches[1][0]).Status; got != workflows.HostFailed {
		t.Errorf("recap %s: %s, want failed", batches[1][0], got)
	}
	for _, b := range batches[2:] {
		for _, h := range b {
			if recap.Host(h).Status != workflows.HostPending {
				t.Errorf("recap %s: %s, want pending", h, recap.Host(h).Status)
			}
			wantUntouched(t, s, a, marks, h, from)
		}
	}
}

// wantPartner checks the other host of the failed batch: it finished the
// step it was running and stopped (or had finished). Either way its state
// must match what the recap says: listed out of rotation, or in service.
func wantPartner(t *testing.T, s *stage.Stage, recap *workflows.Recap, partner string) {
	t.Helper()
	st := fleet(t, s)[partner]
	status := recap.Host(partner).Status
	held := slices.ContainsFunc(recap.OutOfRotation, func(m workflows.HostMarks) bool { return m.Host == partner })
	t.Logf("partner %s: %s, out of rotation in the recap: %v; %s", partner, status, held, st)
	switch {
	case status != workflows.HostStopped && status != workflows.HostDone:
		t.Errorf("recap %s: %s, want stopped or done", partner, status)
	case held && (inRotation(st.HAProxy) || !st.Silenced):
		t.Errorf("%s: %s, but the recap lists it out of rotation", partner, st)
	case !held && (!inRotation(st.HAProxy) || st.Silenced):
		t.Errorf("%s: %s, but the recap does not list it out of rotation", partner, st)
	}
}

// wantEveryStepAudited checks that, across every run since marks, every
// step of every host has an accepted and ok record in its audit log.
func wantEveryStepAudited(t *testing.T, s *stage.Stage, a *deploy.App, marks map[string]int) {
	t.Helper()
	for _, h := range s.Hosts {
		got := auditSteps(a, h.Identity, readAudit(t, s, h.Identity, marks[h.Identity]))
		for _, step := range stepNames(a) {
			if !slices.Contains(got, step) {
				t.Errorf("%s: no accepted, ok audit record of step %s in %v", h.Identity, step, got)
			}
		}
	}
}

// countSteps counts host's audit records of step since marks, whatever
// their outcome.
func countSteps(t *testing.T, a *deploy.App, s *stage.Stage, host string, marks map[string]int, step string) int {
	t.Helper()
	n := 0
	for _, got := range auditSteps(a, host, readAudit(t, s, host, marks[host])) {
		if strings.SplitN(got, "!", 2)[0] == step {
			n++
		}
	}
	return n
}

// appVariant writes a copy of the stage's app file with some lines
// replaced, next to it, and returns its path.
func appVariant(t *testing.T, s *stage.Stage, repl map[string]string) string {
	t.Helper()
	b, err := os.ReadFile(s.AppFile)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	for old, nw := range repl {
		if !strings.Contains(text, old) {
			t.Fatalf("app file has no %q:\n%s", old, text)
		}
		text = strings.ReplaceAll(text, old, nw)
	}
	p := filepath.Join(t.TempDir(), s.App+".yaml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// waitAnswers waits until host answers a signed ping.
func waitAnswers(t *testing.T, op *stage.Operator, host string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := op.Caller.Call(testCtx(t), workflows.Call{Agent: "rpcutil", Action: "ping", Hosts: []string{host}, Timeout: 2 * time.Second})
		if err == nil && len(res) == 1 && res[0].OK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not answer: %v %v", host, res, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
