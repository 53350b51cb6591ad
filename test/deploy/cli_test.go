package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signetbus/signet/internal/cli"
	"github.com/signetbus/signet/internal/stage"
	"github.com/signetbus/signet/workflows"
)

// syncBuffer is a goroutine-safe bytes.Buffer that may call a hook on
// every write.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	on  func(string)
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	n, err := b.buf.Write(p)
	on, all := b.on, b.buf.String()
	b.mu.Unlock()
	if on != nil {
		on(all)
	}
	return n, err
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// signet runs the signet command in-process against the stage's client
// config and returns the exit code, stdout and stderr. out, when set,
// receives stdout as it is written.
func signet(t *testing.T, s *stage.Stage, out io.Writer, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr syncBuffer
	w := io.Writer(&stdout)
	if out != nil {
		w = io.MultiWriter(&stdout, out)
	}
	env := map[string]string{"SIGNET_CONFIG": s.Lab.ClientConfig, "USER": "tester"}
	code := cli.Main(context.Background(), args, cli.IO{In: strings.NewReader(""), Out: w, Err: &stderr, Getenv: func(k string) string { return env[k] }})
	return code, stdout.String(), stderr.String()
}

// auditSizes returns every host's audit log size in bytes.
func auditSizes(t *testing.T, s *stage.Stage) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for _, h := range s.Hosts {
		st, err := os.Stat(auditPath(s, h.Identity))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		if st != nil {
			out[h.Identity] = st.Size()
		}
	}
	return out
}

// TestDeployCLI runs `signet deploy` in-process against the stage's client
// config. --plan prints every batch, host and step and sends nothing to
// any host but the preflight's signed ping (no other audit record,
// nothing changes). --yes --output json
// prints only JSON events, one per line, ending with run_done and its
// recap. A second deploy of the same app and env started while the first
// runs is refused on the lock, which names the holder and its run.
func TestDeployCLI(t *testing.T) {
	s := startStage(t)
	a := loadApp(t, s)
	op := operator(t, s)
	batches := plan(t, s, op, "1.1")

	before := auditMarks(t, s)
	code, out, errOut := signet(t, s, nil, "deploy", "demo", "1.1", "--env", s.Env, "--plan")
	if code != 0 {
		t.Fatalf("deploy --plan: exit %d\n%s", code, errOut)
	}
	want := []string{fmt.Sprintf("plan: deploy demo 1.1 to lab: %d hosts in %d batches (nothing is run)", hosts, len(batches))}
	for i, b := range batches {
		var names []string
		for _, h := range b {
			names = append(names, h+" (zone "+s.Host(h).Zone+")")
		}
		want = append(want, fmt.Sprintf("batch %d/%d: %s", i+1, len(batches), strings.Join(names, ", ")))
	}
	for _, w := range want {
		if !strings.Contains(out, w+"\n") {
			t.Errorf("plan output lacks %q:\n%s", w, out)
		}
	}
	for i, st := range a.Steps() {
		line := regexp.MustCompile(fmt.Sprintf(`(?m)^    %d\. %s +%s\.%s `, i+1, st.Name, st.Agent, st.Action))
		if n := len(line.FindAllString(out, -1)); n != hosts {
			t.Errorf("plan shows step %d %s for %d hosts, want %d:\n%s", i+1, st.Name, n, hosts, out)
		}
	}
	for _, h := range s.Hosts {
		if !strings.Contains(out, "\n  "+h.Identity+"\n") {
			t.Errorf("plan output lacks host %s", h.Identity)
		}
	}
	onlyPreflightPings(t, s, before)
	for id, st := range fleet(t, s) {
		if st.Installed != "1.0" || st.HAProxy != "UP" || st.Silenced {
			t.Errorf("after --plan, %s: %s, want untouched at 1.0", id, st)
		}
	}

	// The JSON deploy, and a second deploy while it holds the lock.
	marks := auditMarks(t, s)
	started := make(chan struct{})
	var once sync.Once
	progress := &syncBuffer{on: func(all string) {
		if strings.Contains(all, `"type":"step_start"`) {
			once.Do(func() { close(started) })
		}
	}}
	type result struct {
		code        int
		out, errOut string
	}
	first := make(chan result, 1)
	go func() {
		code, out, errOut := signet(t, s, progress, "deploy", "demo", "1.1", "--env", s.Env, "--yes", "--output", "json")
		first <- result{code, out, errOut}
	}()
	select {
	case <-started:
	case r := <-first:
		t.Fatalf("the first deploy ended before its first step: exit %d\n%s%s", r.code, r.out, r.errOut)
	case <-time.After(time.Minute):
		t.Fatal("the first deploy did not start a step within a minute")
	}
	var runStart workflows.Event
	line, _, _ := strings.Cut(progress.String(), "\n")
	if err := json.Unmarshal([]byte(line), &runStart); err != nil || runStart.Type != workflows.EventRunStart {
		t.Fatalf("first line %q: %v, want a run_start event", line, err)
	}
	code2, out2, errOut2 := signet(t, s, nil, "deploy", "demo", "1.1", "--env", s.Env, "--yes")
	wantLock := "deploy of demo/lab is locked by operator run " + runStart.Run
	if code2 == 0 || !strings.Contains(errOut2, wantLock) || !strings.Contains(errOut2, "hint: ") {
		t.Errorf("second deploy: exit %d\nstdout %s\nstderr %s\nwant a failure saying %q with a hint", code2, out2, errOut2, wantLock)
	}
	t.Logf("second deploy: exit %d: %s", code2, strings.TrimSpace(errOut2))
	r := <-first
	if r.code != 0 {
		t.Fatalf("deploy --yes --output json: exit %d\n%s", r.code, r.errOut)
	}
	rec := &recorder{}
	rec.Write([]byte(r.out))
	last := rec.done(t)
	if last.Status != workflows.StatusDone || last.Run != runStart.Run || last.Recap == nil || last.Recap.Status != workflows.StatusDone || len(last.Recap.Hosts) != hosts {
		t.Fatalf("run_done: %+v", last)
	}
	for _, h := range last.Recap.Hosts {
		if h.Status != workflows.HostDone || h.OK != len(a.Steps()) {
			t.Errorf("recap %s: %+v, want done with every step ok", h.Host, h)
		}
	}
	ev := rec.Events()
	if ev[0].Type != workflows.EventRunStart || strings.Count(r.out, "\n") != len(ev) {
		t.Errorf("stdout: %d lines, %d events, first %s: want only events, one per line, from run_start", strings.Count(r.out, "\n"), len(ev), ev[0].Type)
	}
	if !strings.Contains(r.errOut, "run log: "+filepath.Join(filepath.Dir(s.AppFile), "runs")) {
		t.Errorf("stderr %q: want the run log path under the stage's runs directory", r.errOut)
	}
	wantDeployed(t, s, "1.1")
	wantAuditMatchesEvents(t, s, a, marks, ev)
}
