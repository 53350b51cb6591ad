package workflows

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Event types.
const (
	EventRunStart   = "run_start"
	EventBatchStart = "batch_start"
	EventStepStart  = "step_start"
	EventStepDone   = "step_done"
	EventHostDone   = "host_done"
	EventBatchDone  = "batch_done"
	EventRunDone    = "run_done"
)

// Step statuses in step_done events.
const (
	StepOK      = "ok"
	StepChanged = "changed"
	StepFailed  = "failed"
	StepSkipped = "skipped"
)

// Event is one thing that happened in a run. It is the unit of every
// output: the JSON lines for Jenkins, the human progress lines and the run
// log file.
type Event struct {
	Time time.Time `json:"time"`
	Run  string    `json:"run"`
	Type string    `json:"type"`
	// Batch is 1-based; 0 outside batches.
	Batch   int    `json:"batch,omitempty"`
	Batches int    `json:"batches,omitempty"`
	Host    string `json:"host,omitempty"`
	Step    string `json:"step,omitempty"`
	// Call is "agent.action" on step events.
	Call string `json:"call,omitempty"`
	// Rollback marks steps of the rollback.
	Rollback bool `json:"rollback,omitempty"`
	// Status is the step status (ok, changed, failed, skipped), the host
	// status (done, failed, stopped, ...) or the run status.
	Status string `json:"status,omitempty"`
	// ElapsedMS is the step's, host's, batch's or run's duration.
	ElapsedMS int64  `json:"elapsed_ms,omitempty"`
	Summary   string `json:"summary,omitempty"`
	Error     string `json:"error,omitempty"`
	// Hosts are the batch's hosts on batch_start.
	Hosts []string `json:"hosts,omitempty"`
	// Results are the answers on step_done.
	Results []Result `json:"results,omitempty"`
	// Recap is set on run_done.
	Recap *Recap `json:"recap,omitempty"`
	// HostCount (every host of the run) and Limits (its capacity and
	// failure policy) are set on run_start, for live views.
	HostCount int     `json:"host_count,omitempty"`
	Limits    *Limits `json:"limits,omitempty"`
}

// Elapsed returns ElapsedMS as a duration.
func (e Event) Elapsed() time.Duration { return time.Duration(e.ElapsedMS) * time.Millisecond }

// Sink receives events. The engine calls it from one goroutine at a time.
// An error (a full disk, a closed pipe to Jenkins) makes the run stop
// starting hosts, and the command fails naming the error: events are never
// lost silently.
type Sink func(Event) error

// Tee sends each event to every non-nil sink and returns their errors.
func Tee(sinks ...Sink) Sink {
	return func(e Event) error {
		var errs []error
		for _, s := range sinks {
			if s != nil {
				if err := s(e); err != nil {
					errs = append(errs, err)
				}
			}
		}
		return errors.Join(errs...)
	}
}

// JSONSink writes one JSON object per event and line (`--output json`, the
// run log file).
func JSONSink(w io.Writer) Sink {
	var mu sync.Mutex
	enc := json.NewEncoder(w)
	return func(e Event) error {
		mu.Lock()
		defer mu.Unlock()
		if err := enc.Encode(e); err != nil {
			return fmt.Errorf("write event: %w", err)
		}
		return nil
	}
}

// TextSink writes live progress lines for people and a recap at the end:
//
//	batch 1/3: web1 web2 web3
//	  web1  drain            changed  1.2s  drained in 2 haproxy
//	...
//	RECAP
//	web1  ok=9  changed=5  failed=0  skipped=0  done
func TextSink(w io.Writer) Sink {
	var mu sync.Mutex
	return func(e Event) error {
		mu.Lock()
		defer mu.Unlock()
		ew := &errWriter{w: w}
		writeText(ew, e)
		if ew.err != nil {
			return fmt.Errorf("write progress: %w", ew.err)
		}
		return nil
	}
}

// WriteTextLog renders a run log (the JSON lines Exec.LogFile holds) as
// the text a terminal shows, each line stamped with its event's UTC time:
// what a report posts to chat, mail or a ticket. A line that is not an
// event is an error naming its line number.
func WriteTextLog(w io.Writer, r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	ew := &errWriter{w: w}
	for n := 1; sc.Scan(); n++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var e Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return fmt.Errorf("run log line %d: %w", n, err)
		}
		var b strings.Builder
		writeText(&b, e)
		stamp := e.Time.UTC().Format(time.RFC3339)
		for _, line := range strings.SplitAfter(b.String(), "\n") {
			if line != "" {
				fmt.Fprintf(ew, "%s %s", stamp, line)
			}
		}
		if ew.err != nil {
			return ew.err
		}
	}
	return sc.Err()
}

// errWriter keeps the first write error.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	if err != nil {
		e.err = err
	}
	return n, err
}

func writeText(w io.Writer, e Event) {
	switch e.Type {
	case EventRunStart:
		fmt.Fprintf(w, "run %s: %s\n", e.Run, e.Summary)
	case EventBatchStart:
		fmt.Fprintf(w, "batch %d/%d: %s\n", e.Batch, e.Batches, strings.Join(e.Hosts, " "))
	case EventStepStart:
		step := e.Step
		if e.Rollback {
			step = "rollback " + step
		}
		fmt.Fprintf(w, "  %-10s %-22s ...\n", e.Host, step)
	case EventStepDone:
		step := e.Step
		if e.Rollback {
			step = "rollback " + step
		}
		line := fmt.Sprintf("  %-10s %-22s %-8s %6s", e.Host, step, e.Status, e.Elapsed().Round(100*time.Millisecond))
		if e.Error != "" {
			line += "  " + e.Error
		} else if e.Summary != "" {
			line += "  " + e.Summary
		}
		fmt.Fprintln(w, strings.TrimRight(line, " "))
	case EventHostDone:
		if e.Status != HostDone || e.Summary != "" {
			fmt.Fprintln(w, strings.TrimRight(fmt.Sprintf("  %-10s %s  %s", e.Host, e.Status, e.Summary), " "))
		}
	case EventGate, EventCanary:
		writeCanaryText(w, e)
	case EventRunDone:
		fmt.Fprintf(w, "run %s %s after %s\n", e.Run, e.Status, e.Elapsed().Round(100*time.Millisecond))
		if e.Error != "" {
			fmt.Fprintf(w, "error: %s\n", e.Error)
		}
		if e.Recap != nil {
			e.Recap.WriteText(w)
		}
	}
}

// Recap sums up a run per host, like Ansible's PLAY RECAP.
type Recap struct {
	Run    string      `json:"run"`
	Status string      `json:"status"`
	Hosts  []HostRecap `json:"hosts"`
	// OutOfRotation lists the hosts left drained or in maintenance.
	OutOfRotation []HostMarks `json:"out_of_rotation,omitempty"`
	// Limits is the capacity policy the run kept to, with the failures
	// counted and the most hosts it had out of rotation at once.
	Limits *Limits `json:"limits,omitempty"`
	// Unreached lists the hosts whose last drain or enable (a partial
	// broadcast) did not reach every load balancer, and which ones missed it.
	Unreached []HostUnreached `json:"unreached,omitempty"`
}

// HostRecap counts one host's steps. OK counts every step that succeeded,
// changed ones included; Changed counts those that changed the host.
type HostRecap struct {
	Host    string `json:"host"`
	OK      int    `json:"ok"`
	Changed int    `json:"changed"`
	Failed  int    `json:"failed"`
	Skipped int    `json:"skipped"`
	Status  string `json:"status"`
	// Rollback is the outcome of on_failure rollback on the host:
	// "rolled back from 1.1 to 1.0", "rollback failed: health: ...", or
	// why it was not rolled back ("not rolled back: no previous version
	// (fresh install of 1.1)").
	Rollback string `json:"rollback,omitempty"`
}

// HostMarks is a host and the rotation marks it still holds.
type HostMarks struct {
	Host  string   `json:"host"`
	Marks []string `json:"marks"`
}

func (m HostMarks) String() string { return m.Host + " (" + strings.Join(m.Marks, ", ") + ")" }

// Host returns the recap line of host, nil when it is not in the run.
func (r *Recap) Host(host string) *HostRecap {
	for i := range r.Hosts {
		if r.Hosts[i].Host == host {
			return &r.Hosts[i]
		}
	}
	return nil
}

// WriteText writes the recap for people.
func (r *Recap) WriteText(w io.Writer) {
	fmt.Fprintln(w, "RECAP")
	width := 4
	for _, h := range r.Hosts {
		width = max(width, len(h.Host))
	}
	for _, h := range r.Hosts {
		fmt.Fprintf(w, "%-*s  ok=%-3d changed=%-3d failed=%-3d skipped=%-3d %s\n", width, h.Host, h.OK, h.Changed, h.Failed, h.Skipped, h.Status)
	}
	if l := r.Limits; l != nil {
		fmt.Fprintf(w, "policy: %s; %d failed, at most %d out of rotation at once\n", l, l.Failures, l.PeakUnavailable)
	}
	r.writeRollback(w)
	if len(r.OutOfRotation) > 0 {
		fmt.Fprintln(w, "left out of rotation:")
		for _, m := range r.OutOfRotation {
			fmt.Fprintf(w, "  %s\n", m)
		}
	}
	if len(r.Unreached) > 0 {
		fmt.Fprintln(w, "last change not reached on every load balancer (did not answer; reconcile them):")
		for _, u := range r.Unreached {
			fmt.Fprintf(w, "  %s\n", u)
		}
	}
}

func (r *Recap) count(e Event) {
	if e.Type != EventStepDone {
		return
	}
	h := r.Host(e.Host)
	if h == nil {
		return
	}
	switch e.Status {
	case StepOK:
		h.OK++
	case StepChanged:
		h.OK++
		h.Changed++
	case StepFailed:
		h.Failed++
	case StepSkipped:
		h.Skipped++
	}
}
