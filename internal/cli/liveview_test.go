package cli

import (
	"bytes"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/signetbus/signet/workflows"
)

// feed plays a run of 6 hosts in 3 batches into a live view: batch 1
// done, batch 2 with web4 in its health step, web5 done and web6 failed.
func feed(t *testing.T, v *liveView) *bytes.Buffer {
	t.Helper()
	clock := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	v.now = func() time.Time { return clock }
	v.width = 200
	w := &workflows.Workflow{Version: 1, Name: "deploy", Hosts: []string{"role=app"}, Batching: workflows.Batching{BatchSize: "3"}, Steps: []workflows.Step{{Name: "x", Agent: "a", Action: "b"}}}
	st := workflows.NewRunState("deploy", [][]string{{"web1", "web2", "web3"}, {"web4", "web5", "web6"}}, nil)
	sink := v.sink(&workflows.Job{Workflow: w, State: st})
	send := func(e workflows.Event) {
		if err := sink(e); err != nil {
			t.Fatal(err)
		}
	}
	send(workflows.Event{Type: workflows.EventRunStart, Run: "r1", Summary: "deploy middleware 1.4.2 to prod", Batches: 2})
	send(workflows.Event{Type: workflows.EventBatchStart, Batch: 1, Batches: 2, Hosts: []string{"web1", "web2", "web3"}})
	for _, h := range []string{"web1", "web2", "web3"} {
		send(workflows.Event{Type: workflows.EventStepStart, Host: h, Step: "update"})
		send(workflows.Event{Type: workflows.EventHostDone, Host: h, Status: workflows.HostDone})
	}
	clock = clock.Add(42 * time.Second)
	send(workflows.Event{Type: workflows.EventBatchStart, Batch: 2, Batches: 2, Hosts: []string{"web4", "web5", "web6"}})
	send(workflows.Event{Type: workflows.EventStepStart, Host: "web5", Step: "update"})
	send(workflows.Event{Type: workflows.EventHostDone, Host: "web5", Status: workflows.HostDone})
	send(workflows.Event{Type: workflows.EventStepStart, Host: "web6", Step: "update"})
	send(workflows.Event{Type: workflows.EventHostDone, Host: "web6", Status: workflows.HostFailed, Error: "web6: update: want 1.4.2, installed 1.4.1"})
	send(workflows.Event{Type: workflows.EventStepStart, Host: "web4", Step: "health"})
	clock = clock.Add(2100 * time.Millisecond)
	v.mu.Lock()
	v.redraw()
	v.mu.Unlock()
	return v.w.(*bytes.Buffer)
}

// lastFrame returns the frame drawn last: the text after the last cursor
// move up, without escape sequences.
func lastFrame(out string) string {
	if i := strings.LastIndex(out, "A\x1b[2K"); i >= 0 {
		out = out[i+1:]
	}
	return stripANSI(out)
}

func stripANSI(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == 0x1b {
			for i < len(s) && !(s[i] >= 'A' && s[i] <= 'Z' || s[i] >= 'a' && s[i] <= 'z') {
				i++
			}
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func TestLiveView(t *testing.T) {
	v := newLiveView(&bytes.Buffer{}, false)
	out := feed(t, v).String()
	frame := lastFrame(out)
	for _, want := range []string{
		"run r1: deploy middleware 1.4.2 to prod\n",
		"[################....] 5/6 hosts  1 failed  0:44\n",
		"caps: max_unavailable 3, max_failures 0, on_failure hold\n",
		"batch 2/2\n",
		"  web4       health          2.1s\n",
		"  web5       done\n",
		"  web6       failed          update: want 1.4.2, installed 1.4.1\n",
	} {
		if !strings.Contains(frame, want) {
			t.Errorf("frame lacks %q:\n%s", want, frame)
		}
	}
	if regexp.MustCompile(`\x1b\[[0-9;]*m`).MatchString(out) {
		t.Errorf("colour without colour: %q", out)
	}
	// The frame is redrawn in place: one cursor move up per redraw.
	if !strings.Contains(out, "\x1b[7A") {
		t.Errorf("no redraw in place: %q", out)
	}

	// The end replaces the frame with the text output's end.
	buf := v.w.(*bytes.Buffer)
	buf.Reset()
	recap := &workflows.Recap{Run: "r1", Status: workflows.StatusFailed, Hosts: []workflows.HostRecap{{Host: "web6", Failed: 1, Status: workflows.HostFailed}}}
	if err := v.event(workflows.Event{Type: workflows.EventRunDone, Run: "r1", Status: workflows.StatusFailed, ElapsedMS: 44000, Error: "web6: update: want 1.4.2", Recap: recap}); err != nil {
		t.Fatal(err)
	}
	end := buf.String()
	if !strings.HasPrefix(end, "\x1b[7A\x1b[J") || !strings.Contains(end, "run r1 failed after 44s\nerror: web6: update: want 1.4.2\nRECAP\n") {
		t.Errorf("end %q: want the frame erased, then the status line, the error and the recap", end)
	}
}

func TestLiveViewColour(t *testing.T) {
	out := feed(t, newLiveView(&bytes.Buffer{}, true)).String()
	if !strings.Contains(out, "\x1b[31m1 failed\x1b[0m") || !strings.Contains(out, "\x1b[32mdone\x1b[0m") {
		t.Errorf("no colour: %q", out)
	}
	if !colorOn(IO{Getenv: func(string) string { return "" }}) || colorOn(IO{Getenv: func(k string) string {
		if k == "NO_COLOR" {
			return "1"
		}
		return ""
	}}) {
		t.Error("NO_COLOR not honoured")
	}
}

// TestLiveViewOnlyOnATerminal: pipes, files and --output json keep the
// line-based output.
func TestLiveViewOnlyOnATerminal(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, c := range []struct {
		io     IO
		format string
	}{
		{IO{Out: &bytes.Buffer{}, IsTerminal: true}, "text"},
		{IO{Out: f, IsTerminal: true}, "text"}, // a file, whatever IsTerminal says
		{IO{Out: os.Stdout, IsTerminal: true}, "json"},
		{IO{Out: os.Stdout, IsTerminal: false}, "text"},
	} {
		if liveViewOn(c.io, c.format) {
			t.Errorf("live view on for %T %s", c.io.Out, c.format)
		}
	}
}

func TestTruncate(t *testing.T) {
	if got := truncate("\x1b[32mabcdef\x1b[0m", 4); stripANSI(got) != "abc" {
		t.Errorf("truncate = %q", got)
	}
	if got := truncate("abc", 10); got != "abc" {
		t.Errorf("truncate = %q", got)
	}
}

// TestLiveViewTallBatch: a batch taller than the terminal lists only the
// hosts in progress and the failed ones, so that the frame never scrolls.
func TestLiveViewTallBatch(t *testing.T) {
	v := newLiveView(&bytes.Buffer{}, false)
	v.height = 2
	frame := lastFrame(feed(t, v).String())
	if strings.Contains(frame, "web5") || !strings.Contains(frame, "web4") || !strings.Contains(frame, "web6") || !strings.Contains(frame, "and 1 done, 0 waiting") {
		t.Errorf("tall batch frame:\n%s", frame)
	}
}
