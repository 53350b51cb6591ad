package deploy

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signetbus/signet/internal/stage"
	"github.com/signetbus/signet/workflows"
	"github.com/signetbus/signet/workflows/gatelab"
)

// TestCanaryAndGatesOnStage runs `signet deploy` with a canary and two
// metric gates on the real stage (dpkg, runit, HAProxy), against a real
// Prometheus scraping a metrics endpoint the test controls and the
// stage's real Alertmanager:
//
//   - the metric goes bad during the canary's bake: the run fails naming
//     the gate, the query and the value; only the canary was touched;
//   - an active alert matching the gate's labels fails the next run;
//   - once silenced it does not, and the baked canary waits for a
//     decision, which a second client (a signet process of its own) gives
//     with `signet deploy --promote RUN`: the first client then deploys
//     the whole fleet;
//   - a client (a process) interrupted while its canary waits leaves the
//     run recorded; `signet deploy --abort RUN` from another process ends
//     it failed, and no other host is touched.
func TestCanaryAndGatesOnStage(t *testing.T) {
	if gatelab.PrometheusBin() == "" {
		t.Skip("prometheus is not installed (apt install prometheus)")
	}
	s := startStage(t)
	a := loadApp(t, s)
	marks := auditMarks(t, s)
	m, err := gatelab.ServeMetrics()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	ctx := testCtx(t)
	p, err := gatelab.StartPrometheus(ctx, gatelab.PrometheusOptions{Dir: filepath.Join(t.TempDir(), "prometheus"), Targets: []string{m.Addr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop() })
	lbl := map[string]string{"app": s.App}
	m.Set("demo_error_ratio", lbl, 0.001)
	if err := p.WaitValue(ctx, "demo_error_ratio", "0.001"); err != nil {
		t.Fatal(err)
	}
	am := &gatelab.Alertmanager{URL: s.AlertmanagerURL}

	f, err := os.OpenFile(s.AppFile, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, `canary:
  hosts: [web1]
  bake: 2s
  interval: 500ms
  promote: manual
gates:
  interval: 500ms
  timeout: 3s
  inconclusive_for: 1m
  checks:
    - name: error-rate
      prometheus:
        url: %s
        query: 'demo_error_ratio{app="%s"}'
        condition: "< 0.05"
    - name: no-page
      alertmanager:
        url: %s
        labels: {app: %s, severity: page}
`, p.URL, s.App, s.AlertmanagerURL, s.App)
	f.Close()
	deployArgs := []string{"deploy", s.App, "1.1", "--env", s.Env, "--yes", "--output", "json"}
	bin := buildSignet(t)

	// 1. The metric goes bad during the bake.
	rec := &recorder{}
	rec.hook = func(e workflows.Event) {
		if e.Type == workflows.EventCanary && e.Status == workflows.CanaryBaking {
			m.Set("demo_error_ratio", lbl, 0.3)
		}
	}
	code, _, errOut := signet(t, s, rec, deployArgs...)
	if code == 0 || !strings.Contains(errOut, "gate error-rate failed during the bake of the canary") || !strings.Contains(errOut, `demo_error_ratio{app="demo"} < 0.05`) || !strings.Contains(errOut, "0.3") {
		t.Fatalf("bad metric during the bake: want a failure naming the gate, the query and 0.3, found exit %d:\n%s", code, errOut)
	}
	if st := fleet(t, s)["web1"]; st.Installed != "1.1" || st.Serves != "1.1" || !inRotation(st.HAProxy) {
		t.Errorf("the canary web1: %s; want 1.1 and in rotation", st)
	}
	for _, h := range s.Hosts[1:] {
		wantUntouched(t, s, a, marks, h.Identity, "1.0")
	}

	// 2. The metric is good again, but a matching alert fires.
	m.Set("demo_error_ratio", lbl, 0.001)
	if err := p.WaitValue(ctx, "demo_error_ratio", "0.001"); err != nil {
		t.Fatal(err)
	}
	page := map[string]string{"alertname": "DemoErrors", "app": s.App, "severity": "page"}
	if err := am.Fire(ctx, page); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = signet(t, s, &recorder{}, deployArgs...)
	if code == 0 || !strings.Contains(errOut, "gate no-page failed") || !strings.Contains(errOut, "DemoErrors") {
		t.Fatalf("an active matching alert: want a failure naming the gate and the alert, found exit %d:\n%s", code, errOut)
	}
	for _, h := range s.Hosts[1:] {
		wantUntouched(t, s, a, marks, h.Identity, "1.0")
	}

	// 3. Silenced, the alert does not count: the canary bakes, waits, and
	// a second client promotes it.
	silence, err := am.Silence(ctx, map[string]string{"alertname": "DemoErrors"})
	if err != nil {
		t.Fatal(err)
	}
	rec = &recorder{}
	waiting := make(chan string, 1)
	rec.hook = func(e workflows.Event) {
		if e.Type == workflows.EventCanary && e.Status == workflows.CanaryWaiting {
			waiting <- e.Run
		}
	}
	type result struct {
		code   int
		errOut string
	}
	first := make(chan result, 1)
	go func() {
		code, _, errOut := signet(t, s, rec, deployArgs...)
		first <- result{code, errOut}
	}()
	var run string
	select {
	case run = <-waiting:
	case r := <-first:
		t.Fatalf("the run ended before its canary waited: exit %d:\n%s", r.code, r.errOut)
	case <-ctx.Done():
		t.Fatal("the canary never waited for a decision")
	}
	for _, h := range s.Hosts[1:] {
		if st := fleet(t, s)[h.Identity]; st.Installed != "1.0" {
			t.Errorf("while the canary waits, %s: %s; want untouched", h.Identity, st)
		}
	}
	code, errOut = signetProcess(t, s, bin, nil, nil, "deploy", "--promote", run)
	if code != 0 || !strings.Contains(errOut, "promote recorded") {
		t.Fatalf("--promote from a second client: exit %d:\n%s", code, errOut)
	}
	select {
	case r := <-first:
		if r.code != 0 {
			t.Fatalf("the promoted run: exit %d:\n%s", r.code, r.errOut)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("the promoted run did not finish")
	}
	done := rec.done(t)
	if done.Status != workflows.StatusDone {
		t.Fatalf("want the run done, found %s: %s", done.Status, done.Error)
	}
	var promoted []string
	for _, e := range rec.Events() {
		if e.Type == workflows.EventCanary && e.Status == workflows.CanaryPromoted {
			promoted = append(promoted, e.Summary)
		}
	}
	if len(promoted) != 1 || !strings.HasPrefix(promoted[0], "promoted by ") || strings.HasPrefix(promoted[0], "promoted by auto") {
		t.Errorf("want one canary promoted event naming the second client's user, found %q", promoted)
	}
	if err := am.Expire(ctx, silence); err != nil {
		t.Fatal(err)
	}
	wantDeployed(t, s, "1.1")
	if err := am.Resolve(ctx, page); err != nil {
		t.Fatal(err)
	}

	// 4. A client (a real process) goes away while its canary waits: the
	// run stays recorded waiting, and `--abort` from another process ends
	// it, failed, touching no other host.
	waiting = make(chan string, 1)
	rec = &recorder{}
	rec.hook = func(e workflows.Event) {
		if e.Type == workflows.EventCanary && e.Status == workflows.CanaryWaiting {
			waiting <- e.Run
		}
	}
	marks = auditMarks(t, s)
	procDone := make(chan result, 1)
	started := make(chan *os.Process, 1)
	go func() {
		code, errOut := signetProcess(t, s, bin, rec, func(p *os.Process) { started <- p }, deployArgs...)
		procDone <- result{code, errOut}
	}()
	var proc *os.Process
	select {
	case proc = <-started:
	case r := <-procDone:
		t.Fatalf("the client did not start: exit %d: %s", r.code, r.errOut)
	}
	select {
	case run = <-waiting:
	case r := <-procDone:
		t.Fatalf("the client ended before its canary waited: exit %d:\n%s", r.code, r.errOut)
	case <-ctx.Done():
		t.Fatal("the canary never waited for a decision")
	}
	proc.Signal(os.Interrupt) // the client goes away: Ctrl-C
	r := <-procDone
	if r.code == 0 || !strings.Contains(r.errOut, "stopped") {
		t.Fatalf("the interrupted client: want a stopped run, found exit %d:\n%s", r.code, r.errOut)
	}
	code, errOut = signetProcess(t, s, bin, nil, nil, "deploy", "--abort", run)
	if code == 0 || !strings.Contains(errOut, "canary aborted by") {
		t.Fatalf("--abort from another process: want the run aborted, found exit %d:\n%s", code, errOut)
	}
	st, err := operator(t, s).Store.Load(ctx, run)
	if err != nil || st.Status != workflows.StatusFailed || st.Canary.Phase != workflows.CanaryAborted || st.Canary.Decision != workflows.DecisionAbort {
		t.Fatalf("the aborted run's record: want failed, canary aborted, found %v %+v", err, st)
	}
	for _, h := range s.Hosts[1:] {
		if got := auditSteps(a, h.Identity, readAudit(t, s, h.Identity, marks[h.Identity])); len(got) != 0 {
			t.Errorf("%s was touched after the abort: %v", h.Identity, got)
		}
	}
}

// buildSignet builds the signet command, for clients that are processes
// of their own.
func buildSignet(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "signet")
	build := exec.Command("go", "build", "-o", bin, "./cmd/signet")
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// signetProcess runs the signet binary as a process of its own against
// the stage's client config, its stdout to out (when set), and returns
// its exit code and stderr. onStart, when set, gets the process.
func signetProcess(t *testing.T, s *stage.Stage, bin string, out io.Writer, onStart func(*os.Process), args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "SIGNET_CONFIG="+s.Lab.ClientConfig, "USER=tester2")
	var stderr syncBuffer
	cmd.Stdout, cmd.Stderr = out, &stderr
	if out == nil {
		cmd.Stdout = io.Discard
	}
	if err := cmd.Start(); err != nil {
		t.Errorf("start signet: %v", err)
		return -1, ""
	}
	if onStart != nil {
		onStart(cmd.Process)
	}
	err := cmd.Wait()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Errorf("signet: %v", err)
		return -1, stderr.String()
	}
	return cmd.ProcessState.ExitCode(), stderr.String()
}
