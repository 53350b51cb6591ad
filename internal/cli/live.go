package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/term"

	"github.com/signetbus/signet/workflows"
)

// liveView is the compact view of a deploy or workflow run on a
// terminal: a status line (run, batch, hosts done and failed, elapsed), a
// progress bar with the caps in use, and one line per host in progress
// with its current step, redrawn in place. Finished batches and failures
// stay on the screen as plain lines above it; the recap prints at the
// end as in the line-based output. It reads the run's JSON events (the
// stream --output json prints), so it sees exactly what Jenkins sees;
// the full step log is in the run log file.
type liveView struct {
	mu    sync.Mutex
	w     io.Writer
	color bool
	// width and height are the terminal's columns and rows (0: unknown).
	width, height func() int
	now           func() time.Time
	buf           []byte // a partial event line

	summary   string
	run       string
	start     time.Time
	limits    *workflows.Limits
	hostCount int
	batch     int
	batches   int
	finished  int      // hosts done
	failed    int      // hosts failed, stopped or held out
	active    []string // hosts with a step in progress, in start order
	hosts     map[string]*liveHost
	// batchHosts are the hosts of the batch in progress, for its line.
	batchHosts []string
	gate       string // the latest gate verdict
	drawn      int    // lines of the block on screen
	ended      bool   // run_done seen

	stop chan struct{}
	tick *time.Ticker
}

type liveHost struct {
	step  string
	since time.Time
}

// newLiveView starts a view writing to w. color follows NO_COLOR; width
// and height give the terminal's size (0: unknown).
func newLiveView(w io.Writer, color bool, width, height func() int) *liveView {
	v := &liveView{w: w, color: color, width: width, height: height, now: time.Now, hosts: map[string]*liveHost{}, stop: make(chan struct{})}
	v.tick = time.NewTicker(time.Second)
	go func() {
		for {
			select {
			case <-v.tick.C:
				v.mu.Lock()
				if !v.ended && v.run != "" {
					v.redraw(nil)
				}
				v.mu.Unlock()
			case <-v.stop:
				return
			}
		}
	}()
	return v
}

// Write takes JSON event lines; a line that is not an event is shown as
// it is, so nothing the run says is lost.
func (v *liveView) Write(p []byte) (int, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.buf = append(v.buf, p...)
	for {
		i := bytes.IndexByte(v.buf, '\n')
		if i < 0 {
			break
		}
		line := v.buf[:i]
		v.buf = v.buf[i+1:]
		var e workflows.Event
		if err := json.Unmarshal(line, &e); err != nil || e.Type == "" {
			v.redraw([]string{string(line)})
			continue
		}
		v.event(e)
	}
	return len(p), nil
}

// Close stops the clock and leaves the screen with the last block drawn.
func (v *liveView) Close() {
	v.tick.Stop()
	close(v.stop)
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.buf) > 0 {
		v.redraw([]string{string(v.buf)})
		v.buf = nil
	}
}

func (v *liveView) event(e workflows.Event) {
	var keep []string // lines that stay above the block
	switch e.Type {
	case workflows.EventRunStart:
		v.run, v.summary, v.start = e.Run, e.Summary, v.now()
		v.batches, v.hostCount, v.limits = e.Batches, e.HostCount, e.Limits
		keep = append(keep, fmt.Sprintf("run %s: %s", e.Run, e.Summary))
	case workflows.EventBatchStart:
		v.batch, v.batches = e.Batch, e.Batches
		v.batchHosts = append([]string(nil), e.Hosts...)
	case workflows.EventStepStart:
		h := v.track(e.Host)
		h.step, h.since = e.Step, v.now()
		if e.Rollback {
			h.step = "rollback " + e.Step
		}
	case workflows.EventStepDone:
		if e.Status == "failed" {
			step := e.Step
			if e.Rollback {
				step = "rollback " + step
			}
			keep = append(keep, v.paint(red, fmt.Sprintf("  %s %s failed: %s", e.Host, step, e.Error)))
		}
	case workflows.EventHostDone:
		v.untrack(e.Host)
		if e.Status == workflows.HostDone {
			v.finished++
			break
		}
		v.failed++
		line := fmt.Sprintf("  %s %s", e.Host, e.Status)
		if e.Status != "failed" && e.Error != "" {
			line += ": " + e.Error
		}
		keep = append(keep, v.paint(red, line))
	case workflows.EventBatchDone:
		keep = append(keep, fmt.Sprintf("batch %d/%d finished in %s: %s", e.Batch, e.Batches,
			e.Elapsed().Round(100*time.Millisecond), strings.Join(v.batchHosts, " ")))
		v.batchHosts = nil
	case workflows.EventCanary:
		keep = append(keep, eventText(e)) // a phase change: baking, waiting, promoted
	case workflows.EventGate:
		// Checked every interval: the latest verdict lives in the block;
		// a failure stays above it.
		v.gate = strings.TrimSpace(eventText(e))
		if e.Status == workflows.GateFail {
			keep = append(keep, v.paint(red, "  "+v.gate))
		}
	case workflows.EventRunDone:
		v.ended = true
		v.clear()
		workflows.TextSink(v.w)(e) // the run's end and the recap, as on a pipe
		return
	}
	v.redraw(keep)
}

// track returns the host's line, adding it to the block.
func (v *liveView) track(host string) *liveHost {
	h := v.hosts[host]
	if h == nil {
		h = &liveHost{since: v.now()}
		v.hosts[host] = h
		v.active = append(v.active, host)
	}
	return h
}

// untrack removes a finished host from the block.
func (v *liveView) untrack(host string) {
	delete(v.hosts, host)
	for i, h := range v.active {
		if h == host {
			v.active = append(v.active[:i], v.active[i+1:]...)
			break
		}
	}
}

// clear erases the block.
func (v *liveView) clear() {
	if v.drawn > 0 {
		fmt.Fprintf(v.w, "\r\x1b[%dA\x1b[J", v.drawn)
	} else {
		io.WriteString(v.w, "\r\x1b[J")
	}
	v.drawn = 0
}

// redraw erases the block, prints keep above it and draws it again.
func (v *liveView) redraw(keep []string) {
	if v.ended {
		for _, l := range keep {
			fmt.Fprintln(v.w, l)
		}
		return
	}
	v.clear()
	for _, l := range keep {
		fmt.Fprintln(v.w, l)
	}
	if v.run == "" {
		return
	}
	lines := v.block()
	for _, l := range lines {
		fmt.Fprintln(v.w, l)
	}
	v.drawn = len(lines)
}

// block is the part redrawn in place.
func (v *liveView) block() []string {
	now := v.now()
	status := fmt.Sprintf("batch %d/%d  %d/%d hosts done", v.batch, v.batches, v.finished, v.hostCount)
	if v.batch == 0 {
		status = fmt.Sprintf("starting: %d batches  %d/%d hosts done", v.batches, v.finished, v.hostCount)
	}
	statusColor := ""
	if v.failed > 0 {
		status += fmt.Sprintf(", %d failed", v.failed)
		statusColor = red
	}
	status += "  " + now.Sub(v.start).Round(time.Second).String()
	out := []string{v.fit(status, statusColor)}
	bar := progressBar(v.finished+v.failed, v.hostCount, 30)
	if l := v.limits; l != nil {
		bar += fmt.Sprintf("  caps: out of rotation %d, failures %d, on failure %s", l.MaxUnavailable, l.MaxFailures, l.OnFailure)
		if l.MaxUnavailablePerZone != "" {
			bar += ", per zone " + l.MaxUnavailablePerZone
		}
	}
	out = append(out, v.fit(bar, ""))
	if v.gate != "" {
		out = append(out, v.fit("  last "+v.gate, ""))
	}
	// A window or a batch taller than the terminal would scroll the top
	// of the block out of reach of the redraw: show what fits and count
	// the rest.
	shown := v.active
	if h := v.height(); h > 0 && len(out)+len(shown) > h-1 {
		n := max(h-2-len(out), 0)
		shown = shown[:min(n, len(shown))]
	}
	for _, name := range shown {
		h := v.hosts[name]
		out = append(out, v.fit(fmt.Sprintf("  %-12s %-22s %s", name, h.step, now.Sub(h.since).Round(time.Second)), yellow))
	}
	if more := len(v.active) - len(shown); more > 0 {
		out = append(out, v.fit(fmt.Sprintf("  ... and %d more hosts in progress", more), yellow))
	}
	return out
}

// eventText is an event as the line-based output writes it.
func eventText(e workflows.Event) string {
	var b strings.Builder
	workflows.TextSink(&b)(e)
	return strings.TrimRight(b.String(), "\n")
}

func progressBar(n, total, width int) string {
	if total <= 0 {
		return "[" + strings.Repeat("-", width) + "]"
	}
	fill := min(width, n*width/total)
	return fmt.Sprintf("[%s%s] %3d%%", strings.Repeat("#", fill), strings.Repeat("-", width-fill), n*100/total)
}

const (
	red    = "31"
	green  = "32"
	yellow = "33"
)

// fit cuts a line to the terminal's width, so that a long error does not
// wrap and break the redraw, then colours it.
func (v *liveView) fit(s, color string) string {
	if w := v.width(); w > 1 && utf8.RuneCountInString(s) > w-1 {
		r := []rune(s)
		s = string(r[:w-2]) + "…"
	}
	return v.paint(color, s)
}

func (v *liveView) paint(color, s string) string {
	if !v.color || color == "" {
		return s
	}
	return "\x1b[" + color + "m" + s + "\x1b[0m"
}

// runOutput picks how a run shows its progress: --output live, or by
// default the live view when stdout is a terminal (and TERM is not
// dumb); otherwise lines (text) or JSON as asked. It returns the writer
// and format to give the run, and a function to call when it ends.
func (g *globalOptions) runOutput(output string) (io.Writer, string, func()) {
	live := output == "live" || (output == "" && g.io.IsTerminal && g.io.Getenv("TERM") != "dumb")
	if !live {
		if output == "" {
			output = "text"
		}
		return g.io.Out, output, func() {}
	}
	width, height := func() int { return 0 }, func() int { return 0 }
	if f, ok := g.io.Out.(*os.File); ok {
		width = func() int {
			w, _, err := term.GetSize(int(f.Fd()))
			if err != nil {
				return 0
			}
			return w
		}
		height = func() int {
			_, h, err := term.GetSize(int(f.Fd()))
			if err != nil {
				return 0
			}
			return h
		}
	}
	v := newLiveView(g.io.Out, g.io.Getenv("NO_COLOR") == "", width, height)
	return v, "json", v.Close
}
