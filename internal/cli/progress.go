package cli

import (
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/signetbus/signet/bus"
)

// progress shows, on a terminal's stderr, how many replies have arrived
// while a query waits, as mco's progress bar did. It rewrites one line and
// erases it before the results print; when off it writes nothing.
type progress struct {
	mu      sync.Mutex
	w       io.Writer
	on      bool
	what    string
	n, fail int
	total   int // 0 until known
	shown   bool
}

// targets records how many hosts the request goes to (bus.Query.OnTargets).
func (p *progress) targets(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.total = n
}

func newProgress(w io.Writer, on bool, what string) *progress {
	return &progress{w: w, on: on, what: what}
}

// progressOn reports whether to show progress: stderr is a terminal and
// --np was not given.
func progressOn(stdio IO, noProgress bool) bool {
	f, ok := stdio.Err.(*os.File)
	return !noProgress && ok && isTerminal(f)
}

// result counts one reply (bus.Query.OnResult).
func (p *progress) result(r bus.Result) {
	if !p.on {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n++
	if r.Status != bus.ResultOK {
		p.fail++
	}
	line := fmt.Sprintf("\r%s: %d replies", p.what, p.n)
	if p.total > 0 {
		line = fmt.Sprintf("\r%s: %d of %d replies", p.what, p.n, p.total)
	}
	if p.fail > 0 {
		line += fmt.Sprintf(" (%d failed)", p.fail)
	}
	io.WriteString(p.w, line)
	p.shown = true
}

// done erases the progress line.
func (p *progress) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown {
		io.WriteString(p.w, "\r\x1b[K")
		p.shown = false
	}
}
