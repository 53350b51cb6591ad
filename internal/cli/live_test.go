package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signetbus/signet/internal/lab"
	"github.com/signetbus/signet/workflows"
)

// feed writes events to the view as the run's JSON stream does, split at
// odd places to show partial lines are kept.
func feed(t *testing.T, v *liveView, events ...workflows.Event) {
	t.Helper()
	for _, e := range events {
		b, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, '\n')
		half := len(b) / 2
		v.Write(b[:half])
		v.Write(b[half:])
	}
}

// TestLiveView (on a 60-column terminal): the block shows the batch, the hosts done and failed, a
// progress bar with the caps, and each host's current step; a finished
// batch and a failure stay above it; at the end the block is erased and
// the recap prints as on a pipe. Long lines are cut to the terminal's
// width; NO_COLOR (color false) leaves no colour codes.
func TestLiveView(t *testing.T) {
	for _, color := range []bool{true, false} {
		var out strings.Builder
		v := newLiveView(&out, color, func() int { return 60 }, func() int { return 0 })
		clock := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
		v.now = func() time.Time { return clock }
		feed(t, v,
			workflows.Event{Type: workflows.EventRunStart, Run: "r1", Summary: "deploy web 1.4.2", Batches: 2, HostCount: 4,
				Limits: &workflows.Limits{MaxUnavailable: 2, MaxFailures: 1, OnFailure: "hold"}},
			workflows.Event{Type: workflows.EventBatchStart, Batch: 1, Batches: 2, Hosts: []string{"web1", "web2"}},
			workflows.Event{Type: workflows.EventStepStart, Host: "web1", Step: "drain"},
			workflows.Event{Type: workflows.EventStepStart, Host: "web2", Step: "update"},
		)
		feed(t, v,
			workflows.Event{Type: workflows.EventCanary, Status: "baking", Hosts: []string{"web1"}, Summary: "baking for 5m0s, checked every 30s"},
			workflows.Event{Type: workflows.EventGate, Step: "errors", Status: workflows.GatePass, Summary: "rate(errors[1m]) < 0.01: 0"},
		)
		clock = clock.Add(3 * time.Second)
		v.redraw(nil) // what the clock's tick does
		screen := out.String()
		for _, want := range []string{"run r1: deploy web 1.4.2", "batch 1/2  0/4 hosts done  3s",
			"[------------------------------]   0%  caps: out of rotati…",
			"web1         drain", "web2         update", "canary web1: baking: baking for 5m0s", "  last gate errors"} {
			if !strings.Contains(screen, want) {
				t.Errorf("color %v: screen lacks %q:\n%s", color, want, screen)
			}
		}
		feed(t, v,
			workflows.Event{Type: workflows.EventHostDone, Host: "web1", Status: workflows.HostDone},
			workflows.Event{Type: workflows.EventStepDone, Host: "web2", Step: "health", Status: "failed", Error: "status 500 from http://127.0.0.1:8080/health " + strings.Repeat("x", 80)},
			workflows.Event{Type: workflows.EventHostDone, Host: "web2", Status: "failed", Error: "health: status 500"},
			workflows.Event{Type: workflows.EventBatchDone, Batch: 1, Batches: 2, ElapsedMS: 4200},
			workflows.Event{Type: workflows.EventRunDone, Run: "r1", Status: "failed", ElapsedMS: 5000, Error: "web2 failed",
				Recap: &workflows.Recap{Run: "r1", Hosts: []workflows.HostRecap{{Host: "web1", Status: workflows.HostDone}, {Host: "web2", Status: "failed"}}}},
		)
		v.Close()
		screen = out.String()
		if !strings.Contains(screen, "  web2 failed\n") && !strings.Contains(screen, "  web2 failed\x1b[0m\n") {
			t.Errorf("color %v: the failed host has no line of its own:\n%s", color, screen)
		}
		for _, want := range []string{"web2 health failed: status 500", "batch 1/2 finished in 4.2s: web1 web2",
			"1/4 hosts done, 1 failed", "run r1 failed after 5s", "RECAP"} {
			if !strings.Contains(screen, want) {
				t.Errorf("color %v: screen lacks %q:\n%s", color, want, screen)
			}
		}
		if has := strings.Contains(screen, "\x1b[31m") && strings.Contains(screen, "\x1b[33m"); has != color {
			t.Errorf("color %v: colour codes present %v", color, has)
		}
		// The block's lines are cut to the width; kept lines are not.
		for _, l := range strings.Split(screen, "\n") {
			l = strings.TrimPrefix(l, "\x1b[33m")
			if strings.HasPrefix(l, "  web") && strings.Contains(l, "…") && len([]rune(strings.TrimSuffix(l, "\x1b[0m"))) > 59 {
				t.Errorf("line wider than the terminal: %q", l)
			}
		}
		if strings.Contains(screen, `"type"`) {
			t.Errorf("JSON events reached the screen:\n%s", screen)
		}
	}
}

// TestRunOutputChoice: the live view by default on a terminal, lines on
// a pipe, TERM=dumb and the explicit formats respected.
func TestRunOutputChoice(t *testing.T) {
	for _, c := range []struct {
		tty    bool
		term   string
		output string
		live   bool
		format string
	}{
		{true, "xterm", "", true, "json"},
		{false, "xterm", "", false, "text"},
		{true, "dumb", "", false, "text"},
		{true, "xterm", "text", false, "text"},
		{true, "xterm", "json", false, "json"},
		{false, "", "live", true, "json"},
	} {
		g := &globalOptions{io: &IO{Out: &strings.Builder{}, IsTerminal: c.tty, Getenv: envMap(map[string]string{"TERM": c.term})}}
		w, format, done := g.runOutput(c.output)
		_, live := w.(*liveView)
		done()
		if live != c.live || format != c.format {
			t.Errorf("tty %v TERM %q --output %q: live %v format %q, want %v %q", c.tty, c.term, c.output, live, format, c.live, c.format)
		}
	}
}

// TestWorkflowLiveOnALab runs a workflow on a real two-host lab with
// --output live and checks what reached the terminal: the block's
// redraws, the finished batch and the recap, and no JSON.
func TestWorkflowLiveOnALab(t *testing.T) {
	l, err := lab.Start(context.Background(), lab.Options{Dir: t.TempDir(), Hosts: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Stop()
	dir := t.TempDir()
	wf := filepath.Join(dir, "check.yaml")
	os.WriteFile(wf, []byte("version: 1\nname: check\nhosts: [role=web]\nbatch_size: \"1\"\nsteps:\n  - name: ping\n    agent: rpcutil\n    action: ping\n"), 0o600)
	env := map[string]string{"SIGNET_CONFIG": l.ClientConfig, "USER": "operator", "HOME": dir, "NO_COLOR": "1"}
	var out, errb strings.Builder
	code := Main(context.Background(), []string{"workflow", "run", wf, "--yes", "--output", "live"},
		IO{In: strings.NewReader(""), Out: &out, Err: &errb, Getenv: envMap(env)})
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	s := out.String()
	for _, want := range []string{"run ", "\x1b[J", "batch 1/2 finished in", "batch 2/2 finished in", "2/2 hosts done", "[##############################] 100%", "RECAP"} {
		if !strings.Contains(s, want) {
			t.Errorf("live output lacks %q:\n%q", want, s)
		}
	}
	if strings.Contains(s, `"type"`) || strings.Contains(s, "m\x1b[0m") || strings.Contains(s, "\x1b[33m") {
		t.Errorf("JSON or colour (NO_COLOR is set) on the screen:\n%q", s)
	}
}

// TestLiveViewTallBatch: a batch of 40 hosts in progress on a 12-row
// terminal shows what fits and counts the rest, so the block never
// scrolls out of reach of its redraw.
func TestLiveViewTallBatch(t *testing.T) {
	var out strings.Builder
	v := newLiveView(&out, false, func() int { return 80 }, func() int { return 12 })
	defer v.Close()
	v.now = func() time.Time { return time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC) }
	var hosts []string
	events := []workflows.Event{{Type: workflows.EventRunStart, Run: "r1", Summary: "deploy web 1.4.2", Batches: 1, HostCount: 40}}
	for i := 1; i <= 40; i++ {
		h := fmt.Sprintf("web%d", i)
		hosts = append(hosts, h)
		events = append(events, workflows.Event{Type: workflows.EventStepStart, Host: h, Step: "update"})
	}
	events = append([]workflows.Event{events[0], {Type: workflows.EventBatchStart, Batch: 1, Batches: 1, Hosts: hosts}}, events[1:]...)
	feed(t, v, events...)
	block := v.block()
	if len(block) > 11 {
		t.Fatalf("block of %d lines on a 12-row terminal:\n%s", len(block), strings.Join(block, "\n"))
	}
	if last := block[len(block)-1]; !strings.Contains(last, "... and 32 more hosts in progress") {
		t.Fatalf("last line %q: want the hosts not shown counted", last)
	}
}
