package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/signetbus/signet/workflows"
)

// liveView is a deploy's progress on a terminal: instead of one line per
// step, a compact frame redrawn in place, with a bar for the run, the
// elapsed time and the caps in use, and one line per host of the batch (or
// window) with its current step. The full step log goes to the run log.
// When the run ends the frame is replaced by the usual end: the status
// line, the error and the recap, as the text output prints them.
//
//	run 7f3a9c: deploy middleware 1.4.2 to prod
//	[########............] 4/9 hosts  0:42  max_unavailable 3, max_failures 0, on_failure hold
//	batch 2/3
//	  web4  health         2.1s
//	  web5  done
//	  web6  failed         update: want 1.4.2, installed 1.4.1
type liveView struct {
	mu     sync.Mutex
	w      io.Writer
	color  bool
	width  int
	height int // the most host lines shown
	now    func() time.Time

	run, summary  string
	caps          string
	total         int
	batch, nbatch int
	start         time.Time
	hosts         []string // of the current batch, in order
	state         map[string]*liveHost
	done, failed  int
	lines         int // lines of the frame on screen
	stop          chan struct{}
	ended         bool
}

type liveHost struct {
	step   string
	since  time.Time
	status string // "" while running, else the host's end status
	detail string
}

// liveViewOn reports whether a deploy shows the live view: text output
// to a terminal. JSON output, pipes and files keep the line-based output.
func liveViewOn(stdio IO, format string) bool {
	f, ok := stdio.Out.(*os.File)
	return format == "text" && stdio.IsTerminal && ok && isTerminal(f)
}

// colorOn reports whether to colour: NO_COLOR (any value) turns it off
// (https://no-color.org).
func colorOn(stdio IO) bool {
	return stdio.Getenv == nil || stdio.Getenv("NO_COLOR") == ""
}

func newLiveView(w io.Writer, color bool) *liveView {
	v := &liveView{w: w, color: color, width: 100, height: 20, now: time.Now, state: map[string]*liveHost{}}
	if f, ok := w.(*os.File); ok {
		if cols, rows, err := term.GetSize(int(f.Fd())); err == nil && cols > 20 {
			v.width, v.height = cols, max(rows-6, 3)
		}
	}
	return v
}

// sink is the Exec.View hook: it learns the run's size and caps from the
// job and redraws every second until the run ends, so that the elapsed
// times move.
func (v *liveView) sink(job *workflows.Job) workflows.Sink {
	for _, b := range job.State.Batches {
		v.total += len(b)
	}
	if lim, err := workflows.ResolveLimits(job.Workflow.Batching, job.Workflow.OnFailure, job.State.Batches, job.State.Zones); err == nil {
		v.caps = lim.String()
	}
	v.stop = make(chan struct{})
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-v.stop:
				return
			case <-t.C:
				v.mu.Lock()
				if !v.ended {
					v.redraw()
				}
				v.mu.Unlock()
			}
		}
	}()
	return v.event
}

func (v *liveView) event(e workflows.Event) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	switch e.Type {
	case workflows.EventRunStart:
		v.run, v.summary, v.start = e.Run, e.Summary, v.now()
	case workflows.EventBatchStart:
		v.batch, v.nbatch, v.hosts = e.Batch, e.Batches, e.Hosts
		v.state = map[string]*liveHost{}
	case workflows.EventStepStart:
		h := v.host(e.Host)
		h.step, h.since = e.Step, v.now()
		if e.Rollback {
			h.step = "rollback " + e.Step
		}
	case workflows.EventHostDone:
		h := v.host(e.Host)
		h.status, h.since = e.Status, v.now()
		if e.Status == workflows.HostDone {
			v.done++
		} else {
			v.failed++
			h.detail = strings.TrimPrefix(e.Error, e.Host+": ")
		}
	case workflows.EventRunDone:
		v.ended = true
		close(v.stop)
		v.clear()
		return workflows.TextSink(v.w)(e)
	}
	if !v.ended {
		v.redraw()
	}
	return nil
}

func (v *liveView) host(name string) *liveHost {
	h := v.state[name]
	if h == nil {
		h = &liveHost{}
		v.state[name] = h
	}
	return h
}

// clear erases the frame on screen; v.mu is held.
func (v *liveView) clear() {
	if v.lines > 0 {
		fmt.Fprintf(v.w, "\x1b[%dA\x1b[J", v.lines)
		v.lines = 0
	}
}

// redraw replaces the frame on screen; v.mu is held.
func (v *liveView) redraw() {
	var lines []string
	lines = append(lines, fmt.Sprintf("run %s: %s", v.run, v.summary))
	finished := v.done + v.failed
	const barWidth = 20
	filled := 0
	if v.total > 0 {
		filled = finished * barWidth / v.total
	}
	bar := "[" + v.paint(green, strings.Repeat("#", filled)) + strings.Repeat(".", barWidth-filled) + "]"
	status := fmt.Sprintf("%s %d/%d hosts", bar, finished, v.total)
	if v.failed > 0 {
		status += "  " + v.paint(red, fmt.Sprintf("%d failed", v.failed))
	}
	status += "  " + clock(v.now().Sub(v.start))
	lines = append(lines, status)
	if v.caps != "" {
		lines = append(lines, "caps: "+v.caps)
	}
	if v.batch > 0 {
		lines = append(lines, fmt.Sprintf("batch %d/%d", v.batch, v.nbatch))
	}
	// A batch (or window) taller than the terminal shows only the hosts
	// in progress and the failed ones, and counts the rest: a frame that
	// scrolls cannot be redrawn in place.
	short := len(v.hosts) > v.height
	var hidden, waiting int
	for _, name := range v.hosts {
		h := v.state[name]
		if short && (h == nil || h.status == workflows.HostDone) {
			if h == nil {
				waiting++
			} else {
				hidden++
			}
			continue
		}
		switch {
		case h == nil:
			lines = append(lines, fmt.Sprintf("  %-10s %s", name, v.paint(dim, "waiting")))
		case h.status == workflows.HostDone:
			lines = append(lines, fmt.Sprintf("  %-10s %s", name, v.paint(green, "done")))
		case h.status != "":
			lines = append(lines, fmt.Sprintf("  %-10s %s  %s", name, v.paint(red, fmt.Sprintf("%-14s", h.status)), h.detail))
		default:
			lines = append(lines, fmt.Sprintf("  %-10s %s %5s", name, v.paint(yellow, fmt.Sprintf("%-14s", h.step)), v.now().Sub(h.since).Round(100*time.Millisecond)))
		}
	}
	if short {
		lines = append(lines, v.paint(dim, fmt.Sprintf("  and %d done, %d waiting", hidden, waiting)))
	}
	var b strings.Builder
	if v.lines > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", v.lines)
	}
	for _, l := range lines {
		b.WriteString("\x1b[2K" + truncate(l, v.width) + "\n")
	}
	b.WriteString("\x1b[J")
	io.WriteString(v.w, b.String())
	v.lines = len(lines)
}

// Colours of the live view (SGR codes).
const (
	green  = "32"
	red    = "31"
	yellow = "33"
	dim    = "2"
)

func (v *liveView) paint(code, s string) string {
	if !v.color || s == "" {
		return s
	}
	return "\x1b[" + code + "m" + s + "\x1b[0m"
}

// truncate cuts a line to the terminal's width, escape sequences not
// counted, so that no line wraps (a wrapped line would break the redraw).
func truncate(s string, width int) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] == 0x1b {
			for i < len(s) && s[i] != 'm' {
				i++
			}
			continue
		}
		if s[i]&0xc0 != 0x80 {
			n++
		}
		if n > width-1 {
			return s[:i] + "\x1b[0m"
		}
	}
	return s
}

func clock(d time.Duration) string {
	d = d.Round(time.Second)
	return fmt.Sprintf("%d:%02d", int(d.Minutes()), int(d.Seconds())%60)
}
