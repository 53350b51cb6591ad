package release

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/signetbus/signet/internal/redact"
)

// runLog is the release log: every line timestamped (UTC, RFC 3339), kept
// whole for mail and the ticket, and echoed to the operator as it is
// written. It is safe for concurrent use, since a deploy may write from
// several goroutines.
type runLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
	out io.Writer
	now func() time.Time
}

func (l *runLog) line(prefix, msg string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ts := l.now().UTC().Format(time.RFC3339)
	for _, s := range strings.Split(strings.TrimRight(msg, "\n"), "\n") {
		// The log is mailed and posted to the ticket and chat: no secrets.
		s = ts + " " + prefix + redact.String(strings.TrimRight(s, "\r")) + "\n"
		l.buf.WriteString(s)
		if l.out != nil {
			io.WriteString(l.out, s)
		}
	}
}

// Printf adds one timestamped entry (several lines if msg holds newlines).
func (l *runLog) Printf(format string, args ...any) {
	l.line("", fmt.Sprintf(format, args...))
}

// String returns the whole log so far.
func (l *runLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// Writer returns a writer for one deploy's output: complete lines are
// timestamped and prefixed ("  app: "); Flush writes a final partial line.
func (l *runLog) Writer(prefix string) *lineWriter {
	return &lineWriter{log: l, prefix: prefix}
}

type lineWriter struct {
	mu      sync.Mutex
	log     *runLog
	prefix  string
	partial []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		w.log.line(w.prefix, string(w.partial[:i]))
		w.partial = w.partial[i+1:]
	}
	if len(w.partial) > 64<<10 { // a runaway line without newline
		w.log.line(w.prefix, string(w.partial))
		w.partial = nil
	}
	return len(p), nil
}

// Flush writes what is left of an unterminated last line.
func (w *lineWriter) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.partial) > 0 {
		w.log.line(w.prefix, string(w.partial))
		w.partial = nil
	}
}
