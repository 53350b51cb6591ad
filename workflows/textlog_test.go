package workflows

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestWriteTextLog renders a run log written by JSONSink back as the
// text a terminal shows, stamped, and names a line that is not an event.
func TestWriteTextLog(t *testing.T) {
	var log bytes.Buffer
	sink := JSONSink(&log)
	at := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	for _, e := range []Event{
		{Time: at, Run: "r1", Type: EventRunStart, Summary: "workflow check"},
		{Time: at.Add(time.Second), Run: "r1", Type: EventBatchStart, Batch: 1, Batches: 1, Hosts: []string{"web1", "web2"}},
		{Time: at.Add(2 * time.Second), Run: "r1", Type: EventStepDone, Host: "web1", Step: "ping", Status: "ok", ElapsedMS: 300},
		{Time: at.Add(3 * time.Second), Run: "r1", Type: EventRunDone, Status: "done", ElapsedMS: 3000},
	} {
		if err := sink(e); err != nil {
			t.Fatal(err)
		}
	}
	var out strings.Builder
	if err := WriteTextLog(&out, &log); err != nil {
		t.Fatal(err)
	}
	want := "2026-11-29T10:00:00Z run r1: workflow check\n" +
		"2026-11-29T10:00:01Z batch 1/1: web1 web2\n" +
		"2026-11-29T10:00:02Z   web1       ping                   ok        300ms\n" +
		"2026-11-29T10:00:03Z run r1 done after 3s\n"
	if out.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", out.String(), want)
	}
	err := WriteTextLog(&out, strings.NewReader("{\"type\":\"run_start\"}\nnot json\n"))
	if err == nil || !strings.Contains(err.Error(), "run log line 2") {
		t.Errorf("a bad line: got %v", err)
	}
}
