// Package audit writes signetd's audit log: one JSON line per request,
// accepted or refused, saying who asked for what, with which parameters,
// what was decided, the result and how long it took.
package audit

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/redact"
)

// Log is an append-only JSON-lines audit log. It implements bus.Auditor.
type Log struct {
	mu   sync.Mutex
	path string
	w    io.Writer
	f    *os.File
	// OnError is called when a record cannot be written; default: print to stderr.
	OnError func(error)
	// Sensitive names the parameters of an action that its plugin declares
	// sensitive; their values are never written. signetd sets it to
	// agents.Host.SensitiveParams. Nil: only names that look secret are
	// masked.
	Sensitive func(agent, action string) map[string]bool
}

// Open opens (creating it 0600, and its directory 0750) the audit log at
// path for appending.
func Open(path string) (*Log, error) {
	l := &Log{path: path}
	if err := l.Reopen(); err != nil {
		return nil, err
	}
	return l, nil
}

// New writes records to w (tests, or stdout in the lab).
func New(w io.Writer) *Log { return &Log{w: w} }

// Reopen reopens the file, for log rotation (signetd does it on SIGHUP).
func (l *Log) Reopen() error {
	if l.path == "" {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(l.path), 0o750); err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	l.mu.Lock()
	old := l.f
	l.f, l.w = f, f
	l.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return nil
}

// Audit writes one record, redacted by Redact.
func (l *Log) Audit(rec *bus.AuditRecord) {
	r := l.Redact(rec)
	b, err := json.Marshal(&r)
	if err == nil {
		b = append(b, '\n')
		l.mu.Lock()
		_, err = l.w.Write(b)
		l.mu.Unlock()
	}
	if err != nil {
		if l.OnError != nil {
			l.OnError(err)
		} else {
			fmt.Fprintf(os.Stderr, "signetd: audit log: %v\n", err)
		}
	}
}

// Redact returns a copy of rec fit to be written: the values of
// parameters declared sensitive or whose names look secret are replaced by
// "[redacted]", and redact.String removes credentials from every other
// parameter, the reason and the summary. The values of the sensitive
// parameters are also removed wherever they appear in the reason and the
// summary (a plugin's error may quote them).
func (l *Log) Redact(rec *bus.AuditRecord) bus.AuditRecord {
	r := *rec
	var sens map[string]bool
	if l.Sensitive != nil && len(r.Params) > 0 {
		sens = l.Sensitive(r.Agent, r.Action)
	}
	r.Params = redact.Params(r.Params, func(name string) bool { return sens[name] })
	secrets := redact.Values(rec.Params, func(name string) bool { return sens[name] })
	r.Reason = redact.Scrub(redact.String(r.Reason), secrets)
	r.Summary = redact.Scrub(redact.String(r.Summary), secrets)
	return r
}

// Close closes the file.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		return l.f.Close()
	}
	return nil
}
